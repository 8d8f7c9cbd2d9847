#![no_main]
coach_fuzz::source_target!("jsonl", "data.jsonl");
