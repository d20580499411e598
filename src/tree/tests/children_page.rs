//! `children_page`: children listed in name order, a page at a time.

use super::helpers::*;
use crate::tree::types::*;

#[test]
fn children_page_lists_children_in_name_order_in_pages() {
    let mut st = fresh();
    for (i, c) in ["d", "b", "a", "c", "e"].iter().enumerate() {
        create(
            &mut st,
            2 + i as u64,
            &format!("/{c}"),
            CreateMode::Persistent,
        )
        .unwrap();
    }
    let names =
        |(v, more): (Vec<&String>, bool)| (v.into_iter().cloned().collect::<Vec<_>>(), more);
    assert_eq!(
        names(st.children_page("/", "", 100).unwrap()),
        (
            vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            false
        )
    );
    assert_eq!(
        names(st.children_page("/", "", 2).unwrap()),
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(
        names(st.children_page("/", "b", 2).unwrap()),
        (vec!["c".into(), "d".into()], true)
    );
    assert_eq!(
        names(st.children_page("/", "d", 2).unwrap()),
        (vec!["e".into()], false)
    );
    assert_eq!(
        names(st.children_page("/", "bb", 1).unwrap()),
        (vec!["c".into()], true)
    );
    assert_eq!(
        names(st.children_page("/", "e", 2).unwrap()),
        (vec![], false)
    );
    assert_eq!(
        names(st.children_page("/a", "", 2).unwrap()),
        (vec![], false)
    );
    assert!(st.children_page("/missing", "", 2).is_none());
}
