//! The page shell (skip link, header with navigation and who is signed in,
//! main landmark) and the small pieces pages share.

use super::assets::{CSS, JS};
use super::session::Session;
use axum::response::Html;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The navigation, in order: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/workflows", "Workflows"),
    ("/runs", "Runs"),
    ("/models", "Models"),
    ("/conversations", "Conversations"),
    ("/review", "Review"),
    ("/experiments", "Experiments"),
    ("/data", "Data"),
];

/// A page's options beyond its title and body.
#[derive(Default)]
pub struct Options<'a> {
    /// The navigation entry this page is under.
    pub nav: &'a str,
    /// A server-sent events URL the page listens to.
    pub live: Option<String>,
    /// Reload the page when the run it shows finishes.
    pub reload_on_finish: bool,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Coach" }
            link rel="stylesheet" href=(CSS.path);
            script src=(JS.path) defer {}
        }
    }
}

/// A full page for a signed-in session.
pub fn page(session: &Session, title: &str, options: Options, body: Markup) -> Html<String> {
    Html(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-live=[options.live.as_deref()] data-reload-on-finish=[options.reload_on_finish.then_some("1")] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Coach" }
                    nav.main aria-label="Main" {
                        ul {
                            @for (path, label) in NAV {
                                li { a href=(path) aria-current=[(*path == options.nav).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.who {
                        span { (session.name) " · " (session.role.as_str()) }
                        form.inline method="post" action="/sign-out" {
                            (csrf(session))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 {
                        @if options.live.is_some() {
                            span #live-dot .live-dot title="live updates" {}
                            span.sr-only { "(updates live) " }
                        }
                        (title)
                    }
                    (body)
                }
                div #keys hidden {
                    p.muted { "Keys: g o overview · g w workflows · g r runs · g m models · g c conversations · g v review · g e experiments · g d data · / search · ? this help" }
                }
            }
        }
    }
    .into_string())
}

/// A page without a session (sign-in, errors before sign-in).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    header.top { a.brand href="/" { "Coach" } }
                    main #main.signin {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

pub fn sign_in_form(next: &str, problem: Option<&str>) -> Html<String> {
    bare(
        "Sign in",
        html! {
            @if let Some(p) = problem { p.error role="alert" #sign-in-error { (p) } }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                p.muted { "Create one with " code { "coach token create --role viewer --name you" } "; the role decides what you can do here." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(serde::Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// `GET /sign-in`
pub async fn sign_in_page(axum::extract::Query(q): axum::extract::Query<Next>) -> Html<String> {
    let next = q
        .next
        .filter(|n| super::session::safe_next(n).is_some())
        .unwrap_or_else(|| "/".into());
    sign_in_form(&next, None)
}

/// A state as a coloured, labelled pill (the word carries the meaning, the
/// colour only repeats it).
pub fn state(s: &str) -> Markup {
    html! { span class={"state state-" (s)} { (s) } }
}

/// A TOML file with keys, strings, comments and tables marked for colour.
pub fn toml(text: &str) -> Markup {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let esc = escape;
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            out.push_str(&format!("<span class=\"c\">{}</span>", esc(line)));
        } else if trimmed.starts_with('[') {
            out.push_str(&format!("<span class=\"h\">{}</span>", esc(line)));
        } else if let Some((k, v)) = line.split_once('=') {
            out.push_str(&format!(
                "<span class=\"k\">{}</span>={}",
                esc(k),
                strings(v)
            ));
        } else {
            out.push_str(&strings(line));
        }
        out.push('\n');
    }
    html! { pre.code tabindex="0" { code { (PreEscaped(out)) } } }
}

/// Escape `s`, marking double-quoted strings.
fn strings(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for ch in s.chars() {
        if ch == '"' {
            if inside {
                out.push_str("&quot;</span>");
            } else {
                out.push_str("<span class=\"s\">&quot;");
            }
            inside = !inside;
            continue;
        }
        out.push_str(&escape(ch.encode_utf8(&mut [0; 4])));
    }
    if inside {
        out.push_str("</span>");
    }
    out
}

/// HTML-escape text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_highlighting_escapes_everything() {
        let h = toml("# a <b>\nname = \"x<script>\"\n[trigger]\n").into_string();
        assert!(!h.contains("<script>") && !h.contains("<b>"));
        assert!(
            h.contains("class=\"c\"") && h.contains("class=\"s\"") && h.contains("class=\"h\"")
        );
    }
}
