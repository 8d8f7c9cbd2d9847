//! {{id}}: a Coach source plugin.
//!
//! It hands Coach the labelled examples written below, in batches, and
//! resumes from a checkpoint. Replace `EXAMPLES` with wherever your data
//! lives: a file a step names (ask for `filesystem = "read"` in
//! plugin.toml and add a `path` parameter), or records you compute.

use coach_plugin_sdk::{
    Batch, Cursor, Example, PluginError, Source, SourceStats, Split, export_source, host,
};

/// The step's parameters: a workflow's `with = { … }`, or
/// `coach plugin run --with KEY=VALUE`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Only examples of these intents (all when absent).
    #[serde(default)]
    intents: Option<Vec<String>>,
}

/// (intent, utterance): a coffee shop's assistant.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("order_coffee", "can I get a latte please"),
    ("order_coffee", "one flat white to go"),
    ("order_coffee", "I'd like a large cappuccino"),
    ("order_coffee", "two espressos for here"),
    ("order_coffee", "a small americano with oat milk"),
    ("order_coffee", "could you make me a mocha"),
    ("order_coffee", "I want to order a coffee"),
    ("order_coffee", "medium iced latte no sugar"),
    ("order_coffee", "get me a double shot macchiato"),
    ("order_coffee", "a tea and a cortado please"),
    ("opening_hours", "when do you open"),
    ("opening_hours", "are you open on sunday"),
    ("opening_hours", "what time do you close today"),
    ("opening_hours", "what are your opening hours"),
    ("opening_hours", "is the shop open late tonight"),
    ("opening_hours", "how early can I come in the morning"),
    ("opening_hours", "are you closed on public holidays"),
    ("opening_hours", "until when are you open on saturday"),
    ("opening_hours", "do you open before seven"),
    ("opening_hours", "what are the hours this weekend"),
    ("wifi", "do you have wifi"),
    ("wifi", "what is the wifi password"),
    ("wifi", "can I use the internet here"),
    ("wifi", "the wifi is not working"),
    ("wifi", "how do I connect to your network"),
    ("wifi", "is there free wireless"),
    ("wifi", "which network should I join"),
    ("wifi", "my laptop can't get online"),
    ("wifi", "is the wifi fast enough for a video call"),
    ("wifi", "password for the guest network please"),
];

pub struct CoffeeShop;

/// Where the stream stands: the next example to hand over.
pub struct Position {
    records: Vec<Example>,
    next: usize,
}

impl Source for CoffeeShop {
    type Cursor = Position;

    fn open(config: &str, checkpoint: Option<String>) -> Result<Position, PluginError> {
        let config: Config = coach_plugin_sdk::parse_config(config)?;
        let records: Vec<Example> = EXAMPLES
            .iter()
            .filter(|(intent, _)| {
                config
                    .intents
                    .as_ref()
                    .is_none_or(|wanted| wanted.iter().any(|w| w == intent))
            })
            .map(|(intent, text)| Example {
                text: (*text).to_owned(),
                intent: (*intent).to_owned(),
                entities: Vec::new(),
                split: Split::Unspecified,
            })
            .collect();
        // A checkpoint is what `checkpoint()` returned: resume there.
        let next = match checkpoint {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= records.len())
                .ok_or_else(|| PluginError::bad_config(format!("checkpoint `{c}` is not a position in this source")))?,
        };
        host::log(
            host::LogLevel::Info,
            &format!("{} examples, starting at {next}", records.len()),
        );
        Ok(Position { records, next })
    }
}

impl Cursor for Position {
    fn next_batch(&mut self, max: u32) -> Result<Batch, PluginError> {
        if host::cancelled() {
            return Err(PluginError::cancelled());
        }
        let end = (self.next + max as usize).min(self.records.len());
        let examples = self.records[self.next..end].to_vec();
        self.next = end;
        Ok(Batch {
            examples,
            conversations: Vec::new(),
        })
    }

    fn checkpoint(&self) -> String {
        self.next.to_string()
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            records: self.next as u64,
            ..SourceStats::default()
        }
    }
}

export_source!(CoffeeShop);

/// Native tests of the logic; `tests/sandbox.rs` runs the component in
/// Coach's sandbox.
#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mut cursor: Position, batch: u32) -> Vec<Example> {
        let mut all = Vec::new();
        loop {
            let b = cursor.next_batch(batch).unwrap();
            if b.examples.is_empty() {
                return all;
            }
            all.extend(b.examples);
        }
    }

    #[test]
    fn every_example_comes_out_once() {
        let got = read_all(CoffeeShop::open("{}", None).unwrap(), 7);
        assert_eq!(got.len(), EXAMPLES.len());
    }

    #[test]
    fn a_checkpoint_resumes_after_the_last_batch() {
        let mut cursor = CoffeeShop::open("", None).unwrap();
        let first = cursor.next_batch(4).unwrap().examples;
        let rest = read_all(CoffeeShop::open("", Some(cursor.checkpoint())).unwrap(), 100);
        assert_eq!(first.len() + rest.len(), EXAMPLES.len());
        assert_ne!(first[0], rest[0]);
    }

    #[test]
    fn intents_filter_and_bad_parameters_are_refused() {
        let got = read_all(CoffeeShop::open(r#"{"intents": ["wifi"]}"#, None).unwrap(), 100);
        assert!(got.iter().all(|e| e.intent == "wifi"));
        assert!(CoffeeShop::open(r#"{"intent": ["wifi"]}"#, None).is_err());
    }
}
