//! Errors located in a file: `file:line:column`, with the offending line
//! and a caret under the span.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The source line and the caret under the span.
    pub snippet: Option<(String, usize, usize)>,
}

impl Located {
    /// An error at byte `span` of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Located {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line = source[..start].matches('\n').count() + 1;
        let line_end = source[start..]
            .find('\n')
            .map(|i| start + i)
            .unwrap_or(source.len());
        let text = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_owned();
        let column = source[line_start..start].chars().count() + 1;
        let width = source[start..span.end.clamp(start, line_end)]
            .chars()
            .count()
            .max(1);
        Located {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            snippet: Some((text, column, width)),
        }
    }

    /// An error about the whole file (it cannot be read, say).
    pub fn file(file: &Path, message: impl Into<String>) -> Located {
        Located {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: message.into(),
            snippet: None,
        }
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl Located {
    /// The error with the source line and a caret, as `coach validate` prints it.
    pub fn render(&self) -> String {
        let mut out = format!("error: {self}");
        if let Some((text, column, width)) = &self.snippet {
            let n = self.line.to_string();
            let pad = " ".repeat(n.len());
            out.push_str(&format!(
                "\n{pad} |\n{n} | {text}\n{pad} | {}{}",
                " ".repeat(column - 1),
                "^".repeat(*width)
            ));
        }
        out
    }
}

/// Every error found in one or more files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Located>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}
