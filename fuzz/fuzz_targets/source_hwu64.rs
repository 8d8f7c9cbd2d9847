#![no_main]
coach_fuzz::source_target!("hwu64", "NLU-Data-Home-Domain-Annotated-All.csv");
