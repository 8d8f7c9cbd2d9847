#![no_main]
coach_fuzz::source_target!("csv", "data.csv");
