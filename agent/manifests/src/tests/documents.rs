use crate::documents::split_documents;
use crate::location::{json_item_offsets, yaml_item_lines};

#[test]
fn splitter_drops_empty_and_comment_only_documents() {
    let text = "---\n# only a comment\n---\n\n---\na: 1\n---\n";
    let docs = split_documents(text);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].content_line, 6);
    assert_eq!(docs[0].first_line, 5);
}

#[test]
fn splitter_keeps_leading_comments_and_directives_with_the_first_document() {
    let text = "%YAML 1.2\n# header\n---\na: 1\n";
    let docs = split_documents(text);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].text, text);
    assert_eq!(docs[0].content_line, 4);
}

#[test]
fn splitter_counts_content_on_the_marker_line() {
    let docs = split_documents("--- {a: 1}\n--- |\n  text\n");
    assert_eq!(
        docs.iter().map(|d| d.content_line).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn splitter_ends_a_document_at_an_end_marker() {
    let docs = split_documents("a: 1\n...\nb: 2\n");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].content_line, 3);
}

#[test]
fn splitter_does_not_split_on_triple_dash_inside_a_word() {
    assert_eq!(split_documents("a: 1\n---b\n").len(), 1);
}

#[test]
fn yaml_item_lines_finds_block_sequence_entries() {
    let doc = "apiVersion: v1\nkind: List\nitems:\n- a: 1\n  b: 2\n# c\n- a: 3\nmetadata: {}\n";
    assert_eq!(yaml_item_lines(doc, 10), [13, 16]);
}

#[test]
fn json_item_offsets_finds_array_elements_of_items() {
    let text = r#"{"kind": "List", "x": {"items": [9]}, "items": [ {"a": "]"}, {"b": [1]} ]}"#;
    let offsets = json_item_offsets(text, 0).unwrap();
    assert_eq!(offsets.len(), 2);
    assert!(text[offsets[0]..].starts_with(r#"{"a""#));
    assert!(text[offsets[1]..].starts_with(r#"{"b""#));
}
