//! Reading the directory's files, and the TOML documents among them: which file is which, and
//! byte offsets turned into line numbers for messages.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;

use super::{FILES, LoadError, MAX_FILE_BYTES, SourceFile};

/// Every regular, non-hidden file directly in `dir`, sorted by name.
pub(super) fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Vec<LoadError>> {
    let dir_name = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![whole(
            &dir_name,
            format!("cannot read the policy directory: {e}"),
        )]
    })?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => match read_entry(&entry) {
                Ok(Some(file)) => files.push(file),
                Ok(None) => {}
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(whole(&dir_name, format!("cannot list the directory: {e}"))),
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// `None`: not a file of the set (hidden, a subdirectory, a name that is not UTF-8).
fn read_entry(entry: &std::fs::DirEntry) -> Result<Option<SourceFile>, LoadError> {
    let Ok(name) = entry.file_name().into_string() else {
        return Ok(None);
    };
    if name.starts_with('.') {
        return Ok(None);
    }
    let path = entry.path();
    // Follows symlinks: ConfigMap mounts link each file into a hidden directory.
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if vanished(&e) => return Ok(None),
        Err(e) => return Err(whole(&name, format!("cannot stat: {e}"))),
    };
    if !meta.is_file() {
        return Ok(None);
    }
    match read_bounded(&path) {
        Ok(Some(contents)) => Ok(Some(SourceFile { name, contents })),
        Ok(None) => Err(whole(&name, format!("larger than {MAX_FILE_BYTES} bytes"))),
        Err(e) if vanished(&e) => Ok(None),
        Err(e) => Err(whole(&name, format!("cannot read: {e}"))),
    }
}

/// Removed between listing and reading (an editor's scratch file): not part of the set.
fn vanished(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// The file's bytes, or `None` past the size limit (read bounded, so a growing file cannot
/// make the loader read without end).
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut contents = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut contents)?;
    let within = u64::try_from(contents.len()).is_ok_and(|n| n <= MAX_FILE_BYTES);
    Ok(within.then_some(contents))
}

fn whole(file: &str, message: String) -> LoadError {
    LoadError {
        file: file.to_owned(),
        line: None,
        message,
    }
}

/// One policy file's text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Doc<'a> {
    pub(super) name: &'static str,
    pub(super) text: &'a str,
}

impl Doc<'_> {
    /// The 1-based line holding byte `offset`.
    fn line(&self, offset: usize) -> usize {
        let upto = &self.text.as_bytes()[..offset.min(self.text.len())];
        upto.iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// `file:line` of a value, as bindings and partners record where they are defined.
    pub(super) fn at<T>(&self, value: &Spanned<T>) -> String {
        format!("{}:{}", self.name, self.line(value.span().start))
    }

    /// An error on the line of `value`.
    pub(super) fn error<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> LoadError {
        self.error_at(Some(value.span().start), message.into())
    }

    /// An error about the file as a whole.
    pub(super) fn whole(&self, message: impl Into<String>) -> LoadError {
        whole(self.name, message.into())
    }

    fn error_at(&self, offset: Option<usize>, message: String) -> LoadError {
        LoadError {
            file: self.name.to_owned(),
            line: offset.map(|o| self.line(o)),
            message,
        }
    }
}

/// The policy files of a directory, by name.
#[derive(Debug)]
pub(super) struct Docs<'a> {
    docs: BTreeMap<&'static str, Doc<'a>>,
    /// Present but not UTF-8: reported once, never taken for absent.
    unreadable: BTreeSet<&'static str>,
}

impl<'a> Docs<'a> {
    /// Sorts `files` into policy files; reports unknown `*.toml` names, text that is not
    /// UTF-8 and missing required files.
    pub(super) fn new(files: &'a [SourceFile], errors: &mut Vec<LoadError>) -> Self {
        let mut docs = Self {
            docs: BTreeMap::new(),
            unreadable: BTreeSet::new(),
        };
        for file in files.iter().filter(|f| f.name.ends_with(".toml")) {
            docs.add(file, errors);
        }
        for (name, required) in FILES {
            if required && !docs.docs.contains_key(name) && !docs.unreadable.contains(name) {
                errors.push(whole(name, "required policy file is missing".into()));
            }
        }
        docs
    }

    fn add(&mut self, file: &'a SourceFile, errors: &mut Vec<LoadError>) {
        let Some(&(name, _)) = FILES.iter().find(|(n, _)| *n == file.name) else {
            let expected: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
            let message = format!("not a policy file (expected {})", expected.join(", "));
            errors.push(whole(&file.name, message));
            return;
        };
        match std::str::from_utf8(&file.contents) {
            Ok(text) => {
                self.docs.insert(name, Doc { name, text });
            }
            Err(e) => {
                // The bytes before `valid_up_to` are UTF-8 by definition.
                let text = std::str::from_utf8(&file.contents[..e.valid_up_to()]).unwrap_or("");
                let doc = Doc { name, text };
                errors.push(doc.error_at(Some(text.len()), "not UTF-8".into()));
                self.unreadable.insert(name);
            }
        }
    }

    /// The file `name` parsed as `T`, with its text for messages; an absent optional file is
    /// `T::default()` with empty text. `None`: a required file is missing or unreadable, or
    /// the TOML is bad (already reported).
    pub(super) fn parse<T: DeserializeOwned + Default>(
        &self,
        name: &'static str,
        errors: &mut Vec<LoadError>,
    ) -> Option<(Doc<'a>, T)> {
        match self.docs.get(name) {
            Some(doc) => match toml::from_str::<T>(doc.text) {
                Ok(parsed) => Some((*doc, parsed)),
                Err(e) => {
                    let offset = e.span().map(|s| s.start);
                    errors.push(doc.error_at(offset, e.message().to_owned()));
                    None
                }
            },
            None if self.optional(name) => Some((Doc { name, text: "" }, T::default())),
            None => None,
        }
    }

    fn optional(&self, name: &str) -> bool {
        !self.unreadable.contains(name) && FILES.iter().any(|&(n, required)| n == name && !required)
    }
}
