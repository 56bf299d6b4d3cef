//! HTML: the main text of a page. Scripts, styles, navigation, headers, footers, asides and
//! forms are dropped; when the page marks its content with `<main>` or `<article>`, only that is
//! kept. Headings split the text into sections; block elements become paragraph breaks.

use std::cell::RefCell;
use std::path::Path;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use crate::document::{utf8, Location, Parsed, Section};
use crate::error::Result;
use crate::formats::{heading_path, push_heading};

/// Elements whose content is never part of the text.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
    "button", "select", "iframe", "head",
];

/// Elements that end a paragraph.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "dl",
    "figure",
    "figcaption",
    "br",
    "hr",
    "td",
    "th",
    "main",
    "article",
    "body",
];

#[derive(Default)]
struct State {
    title: Option<String>,
    in_title: bool,
    title_text: String,
    /// Depth inside skipped elements (they can nest).
    skip_depth: usize,
    /// Depth inside <main> or <article>.
    main_depth: usize,
    saw_main: bool,
    heading: Option<(usize, String)>,
    headings: Vec<(usize, String)>,
    /// (heading path, text, inside main) per section.
    sections: Vec<(Option<String>, String, bool)>,
    current: String,
    current_in_main: bool,
}

impl State {
    fn flush(&mut self) {
        let text = tidy(&self.current);
        if !text.is_empty() {
            self.sections
                .push((heading_path(&self.headings), text, self.current_in_main));
        }
        self.current.clear();
        self.current_in_main = self.main_depth > 0;
    }

    fn push_text(&mut self, text: &str) {
        if let Some((_, heading)) = &mut self.heading {
            heading.push_str(text);
            return;
        }
        if self.current.trim().is_empty() {
            self.current_in_main = self.main_depth > 0;
        }
        self.current.push_str(text);
    }

    fn paragraph_break(&mut self) {
        if !self.current.ends_with("\n\n") {
            self.current.push_str("\n\n");
        }
    }
}

struct Sink {
    state: RefCell<State>,
}

fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut s = self.state.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name: &str = &tag.name;
                let start = tag.kind == TagKind::StartTag;
                if name == "title" {
                    s.in_title = start && !tag.self_closing;
                    if !start && s.title.is_none() {
                        let t = tidy(&s.title_text);
                        if !t.is_empty() {
                            s.title = Some(t);
                        }
                    }
                    if start {
                        return TokenSinkResult::RawData(RawKind::Rcdata);
                    }
                    return TokenSinkResult::Continue;
                }
                if SKIPPED.contains(&name) {
                    if start && !tag.self_closing {
                        s.skip_depth += 1;
                        // Script and style bodies are raw text: `a < b` is not a tag.
                        if name == "script" {
                            return TokenSinkResult::RawData(RawKind::ScriptData);
                        }
                        if matches!(name, "style" | "noscript" | "iframe") {
                            return TokenSinkResult::RawData(RawKind::Rawtext);
                        }
                    } else if !start {
                        s.skip_depth = s.skip_depth.saturating_sub(1);
                    }
                    return TokenSinkResult::Continue;
                }
                if s.skip_depth > 0 {
                    return TokenSinkResult::Continue;
                }
                if matches!(name, "main" | "article") {
                    s.paragraph_break();
                    if start {
                        s.main_depth += 1;
                        s.saw_main = true;
                    } else {
                        s.main_depth = s.main_depth.saturating_sub(1);
                    }
                }
                if let Some(level) = heading_level(name) {
                    if start {
                        s.flush();
                        s.heading = Some((level, String::new()));
                    } else if let Some((level, text)) = s.heading.take() {
                        let text = tidy(&text);
                        if !text.is_empty() {
                            if level == 1 && s.title.is_none() {
                                s.title = Some(text.clone());
                            }
                            push_heading(&mut s.headings, level, text);
                        }
                        s.current_in_main = s.main_depth > 0;
                    }
                } else if BLOCKS.contains(&name) {
                    if name == "br" || name == "td" || name == "th" {
                        s.push_text(if name == "br" { "\n" } else { " " });
                    } else {
                        s.paragraph_break();
                    }
                }
            }
            Token::CharacterTokens(text) => {
                if s.in_title {
                    s.title_text.push_str(&text);
                } else if s.skip_depth == 0 {
                    s.push_text(&text);
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// Collapses runs of spaces inside lines and runs of blank lines, and trims.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut blank = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&words.join(" "));
    }
    out
}

pub fn read(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let text = utf8(path, "html", bytes)?;
    let sink = Sink {
        state: RefCell::new(State::default()),
    };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from_slice(text));
    let _ = tokenizer.feed(&queue);
    tokenizer.end();
    let mut state = tokenizer.sink.state.into_inner();
    state.flush();
    let keep_main_only = state.saw_main;
    let sections = state
        .sections
        .into_iter()
        .filter(|(_, _, in_main)| !keep_main_only || *in_main)
        .map(|(section, text, _)| Section {
            location: Location {
                section,
                ..Default::default()
            },
            text,
        })
        .collect();
    Ok(Parsed {
        title: state.title,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_main_text_and_splits_at_headings() {
        let html = r#"<!doctype html><html><head><title>Warranty &amp; care</title>
            <style>p { color: red }</style><script>if (a < b) { document.write("<p>x</p>") }</script></head>
            <body><nav><a href="/">Home</a> | <a href="/shop">Shop</a></nav>
            <header>Site banner</header>
            <main><h1>Warranty</h1><p>Frames are covered for <b>five</b> years.</p>
            <h2>Batteries</h2><p>Two years,<br>or 800 charge cycles.</p><ul><li>Keep dry</li><li>Store at 50%</li></ul></main>
            <footer>© Example</footer></body></html>"#;
        let parsed = read(Path::new("w.html"), html.as_bytes()).unwrap();
        assert_eq!(parsed.title.as_deref(), Some("Warranty & care"));
        let got: Vec<(Option<&str>, &str)> = parsed
            .sections
            .iter()
            .map(|s| (s.location.section.as_deref(), s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("Warranty"), "Frames are covered for five years."),
                (
                    Some("Warranty › Batteries"),
                    "Two years,\nor 800 charge cycles.\n\nKeep dry\n\nStore at 50%"
                ),
            ]
        );
    }

    #[test]
    fn a_page_without_main_keeps_all_body_text_but_navigation() {
        let html = "<body><nav>Menu</nav><p>Hello</p><div>World</div></body>";
        let parsed = read(Path::new("p.html"), html.as_bytes()).unwrap();
        assert_eq!(parsed.sections.len(), 1);
        assert_eq!(parsed.sections[0].text, "Hello\n\nWorld");
        assert_eq!(parsed.title, None);
    }
}
