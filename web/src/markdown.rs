//! Markdown from researchers (project guidelines) rendered to HTML that is safe to show:
//! CommonMark with tables and strikethrough, then sanitised by ammonia, which keeps
//! formatting tags and drops scripts, event handlers, styles and `javascript:` links.

use pulldown_cmark::{html, Options, Parser};

/// `text` as sanitised HTML, ready for `|safe` in a template.
pub fn render(text: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut unsafe_html = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut unsafe_html, Parser::new_ext(text, options));
    ammonia::Builder::default().link_rel(Some("noopener noreferrer nofollow")).clean(&unsafe_html).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_survives() {
        let html = render("# Rules\n\n- be **brief**\n- [examples](https://example.org)\n");
        assert!(html.contains("<h1>Rules</h1>"), "{html}");
        assert!(html.contains("<strong>brief</strong>"), "{html}");
        assert!(html.contains("href=\"https://example.org\""), "{html}");
    }

    #[test]
    fn scripts_handlers_and_javascript_links_are_dropped() {
        let html = render(
            "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n[click](javascript:alert(3))\n\n<b style=\"x\">b</b>",
        );
        for bad in ["<script", "onerror", "javascript:", "style="] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(html.contains("<b>b</b>"), "{html}");
    }
}
