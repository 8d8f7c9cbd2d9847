#![no_main]
coach_fuzz::source_target!("rasa", "nlu.yml");
