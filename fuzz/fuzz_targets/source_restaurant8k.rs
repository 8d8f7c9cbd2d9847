#![no_main]
coach_fuzz::source_target!("restaurant8k", "train_0.json");
