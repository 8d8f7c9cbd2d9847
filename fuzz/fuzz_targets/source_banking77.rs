#![no_main]
coach_fuzz::source_target!("banking77", "train.csv");
