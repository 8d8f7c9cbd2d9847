//! Reading an event stream as the daemon writes it (server-sent events):
//! the client side, for `coach trigger --follow`, `coach runs logs
//! --follow` and tests.

/// Read an event stream as this daemon writes it (the client side, for the
/// CLI and tests): `each(event, data)` for every event whose data is JSON,
/// until it returns `false` or the stream ends.
pub fn read(
    r: impl std::io::Read,
    mut each: impl FnMut(&str, &serde_json::Value) -> bool,
) -> std::io::Result<()> {
    use std::io::BufRead;
    let (mut event, mut data) = (String::new(), String::new());
    for line in std::io::BufReader::new(r).lines() {
        let line = line?;
        if line.is_empty() {
            if let Ok(v) = serde_json::from_str(&data)
                && !each(&event, &v)
            {
                return Ok(());
            }
            event.clear();
            data.clear();
        } else if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    Ok(())
}
