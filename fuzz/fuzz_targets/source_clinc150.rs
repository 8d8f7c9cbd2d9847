#![no_main]
coach_fuzz::source_target!("clinc150", "data_full.json");
