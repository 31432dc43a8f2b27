//! The payload of a commit record: physical page changes, plus a short logical summary.
//!
//! ```text
//! payload: summary_len u16 | summary | page_count u32 | entries...
//! entry:   kind u8 | page_no u64 | kind 1 (image): used_len u16 | image[..used_len]
//!                                | kind 2 (diff):  run_count u16 | runs...
//! run:     offset u16 | len u16 | bytes[len]
//! ```
//! An image omits its trailing zeros. Redo never reads the summary: it only applies bytes, so it
//! is idempotent and independent of the tree's logic.

use crate::engine::bytes::{Malformed, Reader};
use crate::engine::page::PAGE_SIZE;

const IMAGE: u8 = 1;
const DIFF: u8 = 2;
/// Equal bytes shorter than this between two differing runs are sent rather than split on,
/// since a run header costs 4 bytes.
const MERGE_GAP: usize = 16;
const SUMMARY_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) offset: u16,
    pub(crate) bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Image(Vec<u8>),
    Diff(Vec<Run>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageChange {
    pub(crate) page_no: u64,
    pub(crate) change: Change,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Payload {
    pub(crate) summary: String,
    pub(crate) pages: Vec<PageChange>,
}

/// Runs of bytes where `new` differs from `old` (both page images). Equal 16-byte blocks are
/// skipped as one word compare; a differing block is narrowed to its first and last differing
/// byte (any gap inside a block is shorter than `MERGE_GAP`, so it is sent, not split on).
pub(crate) fn diff(old: &[u8], new: &[u8]) -> Vec<Run> {
    const BLOCK: usize = 16;
    debug_assert!(old.len() == new.len() && new.len().is_multiple_of(BLOCK));
    let word = |b: &[u8]| u128::from_ne_bytes(b.try_into().expect("16-byte block"));
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let blocks = old.chunks_exact(BLOCK).zip(new.chunks_exact(BLOCK));
    for (i, (a, b)) in blocks.enumerate() {
        if word(a) == word(b) {
            continue;
        }
        let differs = |(x, y): (&u8, &u8)| x != y;
        let first = i * BLOCK + a.iter().zip(b).position(differs).unwrap_or(0);
        let last = i * BLOCK + a.iter().zip(b).rposition(differs).unwrap_or(0) + 1;
        match runs.last_mut() {
            Some(run) if first - run.1 < MERGE_GAP => run.1 = last,
            _ => runs.push((first, last)),
        }
    }
    runs.into_iter()
        .map(|(s, e)| Run {
            offset: s as u16,
            bytes: new[s..e].to_vec(),
        })
        .collect()
}

/// The page image after `change`; a diff needs the page's previous image.
#[cfg(test)]
pub(crate) fn apply(change: &Change, base: Option<&[u8]>) -> Result<Vec<u8>, Malformed> {
    match change {
        Change::Image(bytes) => {
            let mut image = bytes.clone();
            image.resize(PAGE_SIZE, 0);
            Ok(image)
        }
        Change::Diff(runs) => {
            let base = base.ok_or_else(|| Malformed("page diff without a base image".into()))?;
            let mut image = base.to_vec();
            for run in runs {
                let at = run.offset as usize;
                image[at..at + run.bytes.len()].copy_from_slice(&run.bytes);
            }
            Ok(image)
        }
    }
}

impl Payload {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let summary = truncated(&self.summary);
        let change_len = |page: &PageChange| match &page.change {
            Change::Image(image) => 11 + image.len(),
            Change::Diff(runs) => 11 + runs.iter().map(|r| 4 + r.bytes.len()).sum::<usize>(),
        };
        let len = 6 + summary.len() + self.pages.iter().map(change_len).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(summary.len() as u16).to_le_bytes());
        out.extend_from_slice(summary.as_bytes());
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for page in &self.pages {
            encode_change(page, &mut out);
        }
        out
    }
}

/// Tests decode through the one parser recovery runs, then copy out.
#[cfg(test)]
impl Payload {
    pub(crate) fn decode(buf: &[u8]) -> Result<Payload, Malformed> {
        let view = PayloadView::parse(buf)?;
        let pages = view.pages.iter().map(|&(page_no, change)| {
            Ok(PageChange {
                page_no,
                change: change.to_change()?,
            })
        });
        Ok(Payload {
            summary: String::from_utf8_lossy(view.summary).into_owned(),
            pages: pages.collect::<Result<_, Malformed>>()?,
        })
    }
}

/// A page change borrowed from a validated payload.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChangeRef<'a> {
    /// The image without its trailing zeros (at most a page).
    Image(&'a [u8]),
    /// `count` runs, already checked to lie inside the page.
    Diff { count: u16, runs: &'a [u8] },
}

/// A parsed payload borrowing the record's bytes instead of copying every image and run:
/// recovery applies these straight to its pages. It is the only payload parser (the owned
/// `Payload::decode` of the tests is a copy of a view).
#[derive(Debug)]
pub(crate) struct PayloadView<'a> {
    pub(crate) summary: &'a [u8],
    pub(crate) pages: Vec<(u64, ChangeRef<'a>)>,
}

impl<'a> PayloadView<'a> {
    pub(crate) fn parse(buf: &'a [u8]) -> Result<PayloadView<'a>, Malformed> {
        let mut r = Reader::new(buf);
        let len = r.u16()? as usize;
        let summary = r.bytes(len)?;
        let count = r.u32()?;
        // Each entry takes at least 11 bytes, so this bounds the allocation by the payload.
        let mut pages = Vec::with_capacity((count as usize).min(buf.len() / 11));
        for _ in 0..count {
            let kind = r.u8()?;
            let page_no = page_no(&mut r)?;
            let change = match kind {
                IMAGE => ChangeRef::Image(bounded(r.u16()? as usize, 0, &mut r)?),
                DIFF => {
                    let count = r.u16()?;
                    let start = r.pos();
                    for _ in 0..count {
                        let offset = r.u16()? as usize;
                        let len = r.u16()? as usize;
                        bounded(len, offset, &mut r)?;
                    }
                    ChangeRef::Diff {
                        count,
                        runs: &buf[start..r.pos()],
                    }
                }
                _ => return Err(Malformed("unknown page change kind".into())),
            };
            pages.push((page_no, change));
        }
        if !r.is_empty() {
            return Err(Malformed("bytes after the last page change".into()));
        }
        Ok(PayloadView { summary, pages })
    }
}

/// Applies a validated change to `page` (a full page) in place.
pub(crate) fn apply_in_place(change: ChangeRef<'_>, page: &mut [u8]) -> Result<(), Malformed> {
    match change {
        ChangeRef::Image(bytes) => {
            page[..bytes.len()].copy_from_slice(bytes);
            page[bytes.len()..].fill(0);
        }
        ChangeRef::Diff { count, runs } => for_each_run(count, runs, |at, bytes| {
            page[at..at + bytes.len()].copy_from_slice(bytes);
        })?,
    }
    Ok(())
}

/// Calls `f(offset, bytes)` for each of a diff's `count` runs, each checked to lie in a page.
fn for_each_run<'a>(
    count: u16,
    runs: &'a [u8],
    mut f: impl FnMut(usize, &'a [u8]),
) -> Result<(), Malformed> {
    let mut r = Reader::new(runs);
    for _ in 0..count {
        let at = r.u16()? as usize;
        let len = r.u16()? as usize;
        f(at, bounded(len, at, &mut r)?);
    }
    Ok(())
}

#[cfg(test)]
impl ChangeRef<'_> {
    fn to_change(self) -> Result<Change, Malformed> {
        match self {
            ChangeRef::Image(bytes) => Ok(Change::Image(bytes.to_vec())),
            ChangeRef::Diff { count, runs } => {
                let mut out = Vec::with_capacity(usize::from(count));
                for_each_run(count, runs, |at, bytes| {
                    out.push(Run {
                        offset: at as u16,
                        bytes: bytes.to_vec(),
                    });
                })?;
                Ok(Change::Diff(out))
            }
        }
    }
}

fn truncated(s: &str) -> &str {
    let mut end = s.len().min(SUMMARY_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn encode_change(page: &PageChange, out: &mut Vec<u8>) {
    match &page.change {
        Change::Image(image) => {
            let used = image.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            out.push(IMAGE);
            out.extend_from_slice(&page.page_no.to_le_bytes());
            out.extend_from_slice(&(used as u16).to_le_bytes());
            out.extend_from_slice(&image[..used]);
        }
        Change::Diff(runs) => {
            out.push(DIFF);
            out.extend_from_slice(&page.page_no.to_le_bytes());
            out.extend_from_slice(&(runs.len() as u16).to_le_bytes());
            for run in runs {
                out.extend_from_slice(&run.offset.to_le_bytes());
                out.extend_from_slice(&(run.bytes.len() as u16).to_le_bytes());
                out.extend_from_slice(&run.bytes);
            }
        }
    }
}

/// Page numbers past 2^40 (an 8 PiB data file) are damage: `page_no * PAGE_SIZE` must not
/// overflow when replay writes the page.
fn page_no(r: &mut Reader<'_>) -> Result<u64, Malformed> {
    const MAX_PAGES: u64 = 1 << 40;
    match r.u64()? {
        n if n < MAX_PAGES => Ok(n),
        _ => Err(Malformed("page number out of range".into())),
    }
}

/// Reads `len` bytes that must land inside a page when written at `offset`.
fn bounded<'a>(len: usize, offset: usize, r: &mut Reader<'a>) -> Result<&'a [u8], Malformed> {
    if offset + len > PAGE_SIZE {
        return Err(Malformed("page change runs past the page end".into()));
    }
    r.bytes(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(fill: impl Fn(usize) -> u8) -> Vec<u8> {
        (0..PAGE_SIZE).map(fill).collect()
    }

    #[test]
    fn a_diff_rebuilds_the_new_image() {
        let old = page(|i| (i % 7) as u8);
        let mut new = old.clone();
        new[10] = 99;
        new[20] = 98;
        new[5000..5100].fill(1);
        let runs = diff(&old, &new);
        assert_eq!(
            runs.len(),
            2,
            "runs 10 bytes apart merge, distant runs do not"
        );
        assert_eq!(apply(&Change::Diff(runs), Some(&old)).unwrap(), new);
    }

    /// The byte-at-a-time definition the block-wise `diff` must agree with: maximal runs of
    /// differing bytes, merged across gaps shorter than `MERGE_GAP`.
    fn diff_bytewise(old: &[u8], new: &[u8]) -> Vec<Run> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for i in (0..new.len()).filter(|&i| old[i] != new[i]) {
            match runs.last_mut() {
                Some(run) if i - run.1 < MERGE_GAP => run.1 = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        let run = |(s, e): (usize, usize)| Run {
            offset: s as u16,
            bytes: new[s..e].to_vec(),
        };
        runs.into_iter().map(run).collect()
    }

    #[test]
    fn block_diff_equals_the_bytewise_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..500 {
            let old = page(|i| (i * 31 % 251) as u8);
            let mut new = old.clone();
            for _ in 0..rng.gen_range(0..40) {
                let at = rng.gen_range(0..PAGE_SIZE);
                let len =
                    rng.gen_range(1..=(PAGE_SIZE - at).min(if round % 2 == 0 { 3 } else { 300 }));
                new[at..at + len].iter_mut().for_each(|b| *b = rng.r#gen());
            }
            let runs = diff(&old, &new);
            assert_eq!(runs, diff_bytewise(&old, &new), "round {round}");
            assert_eq!(apply(&Change::Diff(runs), Some(&old)).unwrap(), new);
        }
    }

    #[test]
    fn a_payload_round_trips() {
        let image = page(|i| if i < 100 { 3 } else { 0 });
        let payload = Payload {
            summary: "put".into(),
            pages: vec![
                PageChange {
                    page_no: 4,
                    change: Change::Image(image[..100].to_vec()),
                },
                PageChange {
                    page_no: 5,
                    change: Change::Diff(vec![Run {
                        offset: 8,
                        bytes: vec![1],
                    }]),
                },
            ],
        };
        assert_eq!(Payload::decode(&payload.encode()).unwrap(), payload);
    }

    #[test]
    fn a_page_number_past_the_largest_data_file_is_malformed() {
        let payload = |page_no| Payload {
            summary: String::new(),
            pages: vec![PageChange {
                page_no,
                change: Change::Image(vec![1]),
            }],
        };
        let ok = payload((1 << 40) - 1).encode();
        assert!(Payload::decode(&ok).is_ok() && PayloadView::parse(&ok).is_ok());
        for page_no in [1 << 40, u64::MAX] {
            let bad = payload(page_no).encode();
            assert!(Payload::decode(&bad).is_err(), "{page_no}");
            assert!(PayloadView::parse(&bad).is_err(), "{page_no}");
        }
    }

    #[test]
    fn the_borrowed_view_applies_like_the_owned_payload() {
        let old = page(|i| (i % 7) as u8);
        let mut new = old.clone();
        new[10] = 99;
        new[5000..5100].fill(1);
        let image = page(|i| if i < 100 { 3 } else { 0 });
        let payload = Payload {
            summary: "put".into(),
            pages: vec![
                PageChange {
                    page_no: 4,
                    change: Change::Image(image[..100].to_vec()),
                },
                PageChange {
                    page_no: 5,
                    change: Change::Diff(diff(&old, &new)),
                },
            ],
        };
        let bytes = payload.encode();
        let view = PayloadView::parse(&bytes).unwrap();
        assert_eq!(view.summary, b"put");
        assert_eq!(view.pages.len(), 2);
        let mut a = vec![9u8; PAGE_SIZE];
        apply_in_place(view.pages[0].1, &mut a).unwrap();
        assert_eq!(a, image);
        let mut b = old.clone();
        apply_in_place(view.pages[1].1, &mut b).unwrap();
        assert_eq!(b, new);
        for cut in 0..bytes.len() {
            assert!(PayloadView::parse(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn a_run_past_the_page_end_is_malformed() {
        let bad = Payload {
            summary: String::new(),
            pages: vec![PageChange {
                page_no: 1,
                change: Change::Diff(vec![Run {
                    offset: 8190,
                    bytes: vec![1, 2, 3],
                }]),
            }],
        };
        assert!(Payload::decode(&bad.encode()).is_err());
        assert!(PayloadView::parse(&bad.encode()).is_err());
    }
}
