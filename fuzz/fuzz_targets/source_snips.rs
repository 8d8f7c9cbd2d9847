#![no_main]
coach_fuzz::source_target!("snips", "train_PlayMusic.json");
