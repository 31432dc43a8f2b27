//! Pages: the header and checksum, and one module per page kind.

mod chain;
mod header;
mod interior;
mod leaf;
mod meta;

pub(crate) use chain::{Free, OVERFLOW_CAPACITY, Overflow};
pub(crate) use header::{HEADER_LEN, PAGE_SIZE, PageType, blank, seal, seal_in_place, unseal};
pub(crate) use interior::Interior;
pub(crate) use leaf::{Cell, Leaf, Value};
pub(crate) use meta::Meta;

use crate::engine::bytes::Malformed;
use crate::engine::error::StorageError;

/// A decoded page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Meta(Meta),
    Leaf(Leaf),
    Interior(Interior),
    Overflow(Overflow),
    Free(Free),
}

impl Node {
    pub(crate) fn kind(&self) -> PageType {
        match self {
            Node::Meta(_) => PageType::Meta,
            Node::Leaf(_) => PageType::Leaf,
            Node::Interior(_) => PageType::Interior,
            Node::Overflow(_) => PageType::Overflow,
            Node::Free(_) => PageType::Free,
        }
    }

    /// The image of this node: deterministic, so equal nodes log equal bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut image = blank(self.kind());
        match self {
            Node::Meta(m) => m.encode(&mut image),
            Node::Leaf(l) => l.encode(&mut image),
            Node::Interior(i) => i.encode(&mut image),
            Node::Overflow(o) => o.encode(&mut image),
            Node::Free(f) => f.encode(&mut image),
        }
        image
    }

    /// Decodes an image (checksum already checked); any inconsistency names the page.
    pub(crate) fn decode(image: &[u8], page_no: u64) -> Result<Node, StorageError> {
        Self::decode_inner(image).map_err(|Malformed(m)| StorageError::corrupted(Some(page_no), m))
    }

    fn decode_inner(image: &[u8]) -> Result<Node, Malformed> {
        if image.len() != PAGE_SIZE {
            return Err(Malformed("page image has the wrong size".into()));
        }
        let kind = PageType::from_byte(image[header::TYPE_AT]);
        let body = &image[HEADER_LEN..];
        let (node, used) = match kind.ok_or_else(|| Malformed("unknown page type".into()))? {
            PageType::Meta => Meta::decode(body).map(|(m, n)| (Node::Meta(m), n))?,
            PageType::Leaf => Leaf::decode(body).map(|(l, n)| (Node::Leaf(l), n))?,
            PageType::Interior => Interior::decode(body).map(|(i, n)| (Node::Interior(i), n))?,
            PageType::Overflow => Overflow::decode(body).map(|(o, n)| (Node::Overflow(o), n))?,
            PageType::Free => Free::decode(body).map(|(f, n)| (Node::Free(f), n))?,
        };
        if body[used..].iter().any(|&b| b != 0) {
            return Err(Malformed("nonzero bytes after the page's contents".into()));
        }
        Ok(node)
    }
}

/// Room for a page kind's contents after the header.
pub(crate) const BODY_LEN: usize = PAGE_SIZE - HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_leaf() -> Node {
        let cell = |k: &str, v: Value| {
            std::sync::Arc::new(Cell {
                key: k.as_bytes().to_vec(),
                version: 9,
                value: v,
            })
        };
        Node::Leaf(Leaf {
            cells: vec![
                cell("a", Value::Inline(b"one".to_vec())),
                cell(
                    "b",
                    Value::Overflow {
                        head: 5,
                        len: 70000,
                    },
                ),
            ],
        })
    }

    #[test]
    fn every_kind_round_trips() {
        let nodes = [
            Node::Meta(Meta {
                page_count: 9,
                free_head: 3,
                root: 1,
                next_table_id: 4,
            }),
            sample_leaf(),
            Node::Interior(Interior {
                keys: vec![b"m".to_vec()],
                children: vec![1, 2],
            }),
            Node::Overflow(Overflow {
                next: 0,
                data: vec![1, 2, 3],
            }),
            Node::Free(Free { next: 8 }),
        ];
        for node in nodes {
            assert_eq!(Node::decode(&node.encode(), 1).unwrap(), node);
        }
    }

    #[test]
    fn random_images_decode_or_fail_without_panicking() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let valid = sample_leaf().encode();
        for _ in 0..2000 {
            let mut image = valid.clone();
            for _ in 0..rng.gen_range(1..8) {
                image[rng.gen_range(0..64)] = rng.r#gen();
            }
            let _ = Node::decode(&image, 1);
        }
    }
}
