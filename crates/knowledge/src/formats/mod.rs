//! One reader per file format. Each returns a title (when the file has one) and sections whose
//! locations point back into the file.

pub mod docx;
pub mod html;
pub mod pdf;
pub mod records;
pub mod text;

/// Joins a heading path for `Location::section`.
pub(crate) fn heading_path(headings: &[(usize, String)]) -> Option<String> {
    if headings.is_empty() {
        None
    } else {
        Some(
            headings
                .iter()
                .map(|(_, h)| h.as_str())
                .collect::<Vec<_>>()
                .join(" › "),
        )
    }
}

/// Keeps the heading stack in order when a heading of `level` arrives.
pub(crate) fn push_heading(headings: &mut Vec<(usize, String)>, level: usize, text: String) {
    while headings.last().is_some_and(|(l, _)| *l >= level) {
        headings.pop();
    }
    headings.push((level, text));
}
