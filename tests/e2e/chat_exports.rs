//! The chat-export sources as a user runs them: a Slack export zip and a
//! Rasa tracker dump read by incremental source steps, each resuming from
//! its checkpoint in a new process after its data grew.

use crate::common::{Home, snapshot_conversations};
use std::io::Write;
use std::path::Path;

fn write_zip(path: &Path, members: &[(&str, &str)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

const USERS: &str = r#"[{"id":"U1","name":"alice"},{"id":"U2","name":"bob"},{"id":"UB","name":"helpbot","is_bot":true}]"#;
const CHANNELS: &str = r#"[{"id":"C1","name":"support"}]"#;
const DAY1: &str = r#"[
  {"type":"message","user":"U1","text":"my card was declined <@UB>","ts":"1795947300.000100","thread_ts":"1795947300.000100"},
  {"type":"message","user":"UB","text":"Sorry! Is it a new card?","ts":"1795947305.000100","thread_ts":"1795947300.000100"},
  {"type":"message","subtype":"channel_join","user":"U2","text":"<@U2> has joined the channel","ts":"1795947400.000000"},
  {"type":"message","user":"U2","text":"how do I close my account?","ts":"1795947500.000000"},
  {"type":"message","bot_id":"B1","subtype":"bot_message","text":"You can close it under Settings &gt; Account.","ts":"1795947501.000000"}
]"#;
const DAY2: &str = r#"[
  {"type":"message","user":"U1","text":"yes, it arrived yesterday","ts":"1796033700.000100","thread_ts":"1795947300.000100"},
  {"type":"message","user":"U2","text":"what are your opening hours?","ts":"1796033800.000000"}
]"#;

fn workflow(home: &Home, name: &str, plugin: &str, path: &Path) -> String {
    home.write(
        &format!("{name}.toml"),
        &format!(
            "version = 1\nname = \"{name}\"\n\n[[step]]\nid = \"chats\"\nuses = \"{plugin}\"\nincremental = true\nwith = {{ path = \"{}\" }}\n",
            path.display()
        ),
    )
    .display()
    .to_string()
}

#[test]
fn a_slack_export_is_read_and_resumed_when_it_grows() {
    let home = Home::new("");
    let grant = format!(
        "[grants.source-slack]\nread = [\"{}\"]\n",
        home.path("data-in").display()
    );
    let config = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(&home.config, format!("{config}\n{grant}")).unwrap();
    let export = home.path("data-in/slack-export.zip");
    write_zip(
        &export,
        &[
            ("users.json", USERS),
            ("channels.json", CHANNELS),
            ("support/", ""),
            ("support/2026-11-29.json", DAY1),
        ],
    );
    let wf = workflow(&home, "slack", "source-slack", &export);
    let first = home.coach(&["run", &wf]);
    first.expect_ok();
    assert!(first.all().contains("2 conversations"), "{}", first.all());
    let convs = snapshot_conversations(&home, "slack/chats");
    assert_eq!(
        convs[0],
        (
            "slack:support:1795947300.000100".to_owned(),
            vec![
                (
                    "user".to_owned(),
                    "my card was declined @helpbot".to_owned()
                ),
                ("bot".to_owned(), "Sorry! Is it a new card?".to_owned()),
            ]
        )
    );
    assert_eq!(convs[1].0, "slack:support:2026-11-29");
    assert_eq!(
        convs[1].1[1],
        (
            "bot".to_owned(),
            "You can close it under Settings > Account.".to_owned()
        )
    );

    // The next export has a reply in the thread and a new day.
    write_zip(
        &export,
        &[
            ("users.json", USERS),
            ("channels.json", CHANNELS),
            ("support/2026-11-29.json", DAY1),
            ("support/2026-11-30.json", DAY2),
        ],
    );
    let second = home.coach(&["run", &wf]);
    second.expect_ok();
    assert!(
        second.all().contains("resuming after snapshot"),
        "{}",
        second.all()
    );
    assert!(second.all().contains("2 new record(s)"), "{}", second.all());
    let convs = snapshot_conversations(&home, "slack/chats");
    let ids: Vec<&str> = convs.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "slack:support:2026-11-29",
            "slack:support:1795947300.000100",
            "slack:support:2026-11-30"
        ]
    );
    assert_eq!(convs[1].1.len(), 3, "the thread replaces its copy");

    // Not a Slack export: one clear line.
    let junk = home.write("data-in/not-slack.zip", "just text");
    let wf = workflow(&home, "junk", "source-slack", &junk);
    home.coach(&["run", &wf])
        .expect_failure_with("is neither a folder nor a zip file");
}

const TRACKER: &str = r#"{"sender_id":"u1","events":[{"event":"session_started","timestamp":1795947300.0},{"event":"action","name":"action_listen","timestamp":1795947300.1},{"event":"user","text":"book a table for two","timestamp":1795947301.0,"parse_data":{"intent":{"name":"book_table","confidence":0.91}}},{"event":"bot","text":"For what time?","timestamp":1795947302.0}]}"#;

#[test]
fn a_rasa_tracker_dump_is_read_and_resumed_when_it_grows() {
    let home = Home::new("");
    let grant = format!(
        "[grants.source-rasa]\nread = [\"{}\"]\n",
        home.path("data-in").display()
    );
    let config = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(&home.config, format!("{config}\n{grant}")).unwrap();
    let dump = home.write("data-in/rasa/trackers.jsonl", &format!("{TRACKER}\n"));
    let wf = workflow(&home, "rasa", "source-rasa", dump.parent().unwrap());
    let first = home.coach(&["run", &wf]);
    first.expect_ok();
    assert!(first.all().contains("1 conversations"), "{}", first.all());

    // The event broker's events arrive later: a new session of u1, and u2.
    home.write(
        "data-in/rasa/events-2.jsonl",
        concat!(
            r#"{"sender_id":"u1","event":"session_started","timestamp":1796033700.0}"#, "\n",
            r#"{"sender_id":"u1","event":"user","text":"cancel my booking","timestamp":1796033701.0,"parse_data":{"intent":{"name":"cancel","confidence":0.88}}}"#, "\n",
            r#"{"sender_id":"u2","event":"user","text":"are you open on sunday","timestamp":1796033702.0,"parse_data":{"intent":{"name":"hours","confidence":0.7}}}"#, "\n",
            r#"{"sender_id":"u2","event":"bot","text":"Yes, 10 to 4.","timestamp":1796033703.0}"#, "\n",
        ),
    );
    let second = home.coach(&["run", &wf]);
    second.expect_ok();
    assert!(second.all().contains("2 new record(s)"), "{}", second.all());
    let convs = snapshot_conversations(&home, "rasa/chats");
    let ids: Vec<&str> = convs.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids, ["u1", "u1#2", "u2"]);
    assert_eq!(
        convs[2].1,
        vec![
            ("user".to_owned(), "are you open on sunday".to_owned()),
            ("bot".to_owned(), "Yes, 10 to 4.".to_owned()),
        ]
    );
}
