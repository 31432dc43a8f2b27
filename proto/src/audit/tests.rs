use super::*;
use crate::signing::PublicKey;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix(T0 + secs)
}

fn key() -> SecretKey {
    SecretKey::from_seed(&[9; 32])
}

fn signed(anchor_lines: u64) -> AuditOptions {
    AuditOptions {
        signer: Some(key()),
        anchor_lines,
        ..AuditOptions::default()
    }
}

/// A log of `n` events (anchored every 4 lines) in a fresh directory.
fn written(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, "test", signed(4), at(0)).unwrap();
    for i in 0..n {
        log.record(at(0), "test", [("i", Value::from(i))]);
    }
    (dir, path)
}

fn checked(text: &str, copy: Option<&str>) -> Result<Report, Broken> {
    let options = VerifyOptions {
        keys: vec![key().public_key()],
        anchor_copy: copy.map(str::to_owned),
        partial: false,
    };
    verify(&[("audit.log".into(), text.to_owned())], &options)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn joined(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn at_line(line: usize) -> Place {
    Place {
        file: "audit.log".into(),
        line,
        seq: Some(line as u64),
    }
}

#[test]
fn an_untouched_log_verifies_with_its_anchors_and_copy() {
    let (_dir, path) = written(10);
    let text = std::fs::read_to_string(&path).unwrap();
    let copy = std::fs::read_to_string(default_anchor_copy(&path)).unwrap();
    let report = checked(&text, Some(&copy)).unwrap();
    // 10 events and an anchor after every 4 lines: e e e e A e e e e A e e.
    assert_eq!(report.lines, 12);
    assert_eq!(report.anchors, 2);
    assert_eq!(report.unanchored_tail, 2);
    assert_eq!(report.anchor_copy_seq, Some(10));
}

#[test]
fn an_edited_line_is_named() {
    let (_dir, path) = written(6);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"i\":1", "\"i\":7", 1);
    assert_eq!(checked(&edited, None), Err(Broken::Edited(at_line(2))));
}

#[test]
fn an_inserted_line_is_named() {
    let (_dir, path) = written(6);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut l = lines(&text);
    // A line copied from elsewhere in the log, slipped in after line 2.
    l.insert(2, l[0]);
    assert_eq!(
        checked(&joined(&l), None),
        Err(Broken::Inserted(Place {
            file: "audit.log".into(),
            line: 3,
            seq: Some(1)
        }))
    );
    // A forged line that links to the line before it and takes the next line's seq.
    let mut event = Map::new();
    event.insert("kind".into(), "forged".into());
    let forged = chain_line(event, 3, &line_hash(lines(&text)[1])).0;
    let mut l = lines(&text);
    l.insert(2, &forged);
    assert_eq!(
        checked(&joined(&l), None),
        Err(Broken::Inserted(at_line(3)))
    );
}

#[test]
fn a_removed_line_is_named() {
    let (_dir, path) = written(6);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut l = lines(&text);
    l.remove(2);
    assert_eq!(
        checked(&joined(&l), None),
        Err(Broken::Removed {
            at: Place {
                file: "audit.log".into(),
                line: 3,
                seq: Some(4)
            },
            from: 3,
            to: 3
        })
    );
}

#[test]
fn a_reordered_pair_is_named() {
    let (_dir, path) = written(6);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut l = lines(&text);
    l.swap(1, 2);
    assert_eq!(
        checked(&joined(&l), None),
        Err(Broken::Reordered(Place {
            file: "audit.log".into(),
            line: 2,
            seq: Some(3)
        }))
    );
}

#[test]
fn a_truncated_tail_is_caught_by_the_anchor_kept_outside_the_log() {
    let (_dir, path) = written(10);
    let text = std::fs::read_to_string(&path).unwrap();
    let copy = std::fs::read_to_string(default_anchor_copy(&path)).unwrap();
    let l = lines(&text);
    // Cut back to before the last anchor (seq 10): the chain alone is still valid.
    let cut = joined(&l[..7]);
    assert!(checked(&cut, None).is_ok());
    assert_eq!(
        checked(&cut, Some(&copy)),
        Err(Broken::Truncated {
            ends: 7,
            anchored: 10
        })
    );
}

#[test]
fn a_rewritten_chain_fails_its_next_anchor_and_a_forged_anchor_fails_the_key() {
    let (_dir, path) = written(6);
    let text = std::fs::read_to_string(&path).unwrap();
    // Rewrite line 2 and re-chain every line after it, as an attacker without the key can.
    let mut prev = GENESIS.to_owned();
    let mut rewritten = String::new();
    for line in lines(&text) {
        let mut event: Map<String, Value> = serde_json::from_str(line).unwrap();
        if event["seq"] == 2 {
            event.insert("i".into(), 99.into());
        }
        let seq = event["seq"].as_u64().unwrap();
        let (line, hash) = chain_line(event, seq, &prev);
        rewritten.push_str(&line);
        rewritten.push('\n');
        prev = hash;
    }
    let err = checked(&rewritten, None).unwrap_err();
    assert!(
        matches!(&err, Broken::AnchorForged { at, .. } if at.seq == Some(5)),
        "{err}"
    );

    // The same log anchored by another key.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("audit.log");
    let options = AuditOptions {
        signer: Some(SecretKey::from_seed(&[1; 32])),
        anchor_lines: 4,
        ..AuditOptions::default()
    };
    let log = AuditLog::open(&other, "test", options, at(0)).unwrap();
    for i in 0..6 {
        log.record(at(0), "test", [("i", Value::from(i))]);
    }
    let text = std::fs::read_to_string(&other).unwrap();
    let err = checked(&text, None).unwrap_err();
    assert!(
        matches!(&err, Broken::AnchorForged { why, .. } if why.contains("not an audit key")),
        "{err}"
    );
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let options = AuditOptions {
        rotate_bytes: 1,
        rotate_secs: 0,
        ..signed(1000)
    };
    let log = AuditLog::open(&path, "test", options, at(0)).unwrap();
    for i in 0..3 {
        log.record(at(i), "test", [("i", Value::from(i))]);
    }
    drop(log);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".anchor"))
        .collect();
    files.sort();
    // Every file but the live one ends with its rotation anchor: e A | e A | e.
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[1].to_string_lossy().ends_with(".000000000001"));
    assert!(files[2].to_string_lossy().ends_with(".000000000003"));
    let keys = vec![key().public_key()];
    let options = VerifyOptions {
        keys,
        ..VerifyOptions::default()
    };
    // In glob order (the live file first): ordered by their first lines.
    let report = verify_files(&files, &options).unwrap().unwrap();
    assert_eq!((report.lines, report.anchors), (5, 2));
    // A missing middle file is a gap.
    let without = [files[0].clone(), files[2].clone()];
    let err = verify_files(&without, &options).unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Broken::Removed { from: 1, to: 2, .. } | Broken::StartsMidChain(_)
        ),
        "{err}"
    );
    let without = [files[0].clone(), files[1].clone()];
    let err = verify_files(&without, &options).unwrap().unwrap_err();
    assert!(
        matches!(err, Broken::Removed { from: 3, to: 4, .. }),
        "{err}"
    );
}

#[test]
fn an_empty_live_file_after_a_rotation_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let options = || AuditOptions {
        rotate_bytes: 1,
        rotate_secs: 0,
        ..signed(1000)
    };
    let log = AuditLog::open(&path, "test", options(), at(0)).unwrap();
    log.record(at(0), "test", []);
    log.record(at(1), "test", []);
    drop(log);
    // A crash right after the rotation, before the next line reached the new file.
    std::fs::write(&path, "").unwrap();
    let log = AuditLog::open(&path, "test", options(), at(2)).unwrap();
    drop(log);
    let rotated = dir.path().join("audit.log.000000000001");
    let text = std::fs::read_to_string(&path).unwrap();
    let first: Value = serde_json::from_str(lines(&text)[0]).unwrap();
    assert_eq!(first["seq"], 3, "{text}");
    let options = VerifyOptions {
        keys: vec![key().public_key()],
        ..VerifyOptions::default()
    };
    let report = verify_files(&[rotated, path], &options).unwrap().unwrap();
    assert_eq!(report.last_seq, 3);
}

#[test]
fn a_reopened_log_anchors_at_once_and_a_clean_close_anchors_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, "test", signed(100), at(0)).unwrap();
    log.record(at(0), "test", []);
    log.close(at(1));
    drop(log);
    let log = AuditLog::open(&path, "test", signed(100), at(2)).unwrap();
    log.record(at(2), "test", []);
    log.tick(at(3));
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
    log.tick(at(62));
    let text = std::fs::read_to_string(&path).unwrap();
    let kinds: Vec<String> = lines(&text)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["reason"].to_string())
        .collect();
    assert_eq!(
        kinds,
        ["null", "\"close\"", "\"open\"", "null", "\"interval\""]
    );
    let copy = std::fs::read_to_string(default_anchor_copy(&path)).unwrap();
    assert_eq!(checked(&text, Some(&copy)).unwrap().unanchored_tail, 0);
}

#[test]
fn a_torn_last_line_is_cut_off_and_recorded() {
    let (_dir, path) = written(3);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"{\"ts\":\"half a li").unwrap();
    drop(file);
    let log = AuditLog::open(&path, "test", signed(4), at(1)).unwrap();
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    let last_two: Vec<Value> = lines(&text)[3..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(last_two[0]["kind"], "torn_line_removed");
    assert_eq!(last_two[0]["bytes"], 16);
    assert_eq!(last_two[1]["kind"], "anchor");
    assert!(checked(&text, None).is_ok());
}

#[test]
fn the_last_line_is_the_one_str_lines_gives() {
    let texts = ["a\n", "ab\ncd\n", "a\n\n", "\n", "a\r\n", "\r\n"];
    for text in texts {
        let expected = text.lines().next_back().map(str::as_bytes);
        let bytes = text.as_bytes();
        // Every suffix is an end of the file as reading it block by block may hold it.
        for start in 0..bytes.len() {
            let found = line_at_end(&bytes[start..], start == 0);
            assert!(
                found.is_none() || found == expected,
                "{text:?} from {start}"
            );
        }
        assert_eq!(line_at_end(bytes, true), expected, "{text:?}");
    }
}

#[test]
fn a_large_log_is_continued_from_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let unsigned = || AuditOptions::default();
    let log = AuditLog::open(&path, "test", unsigned(), at(0)).unwrap();
    for i in 0..20_000 {
        log.record(at(0), "test", [("i", Value::from(i))]);
    }
    // A last line longer than a block, so finding its start takes several reads.
    let long = "x".repeat(3 * TAIL_BLOCK as usize);
    log.record(at(0), "test", [("long", Value::from(long))]);
    drop(log);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 100 * TAIL_BLOCK, "{len} bytes is not many blocks");

    let reopened = AuditLog::open(&path, "test", unsigned(), at(0)).unwrap();
    reopened.record(at(0), "test", [("reopened", Value::from(true))]);
    let text = std::fs::read_to_string(&path).unwrap();
    let options = VerifyOptions::default();
    let report = verify(&[("audit.log".into(), text)], &options).unwrap();
    assert_eq!((report.lines, report.last_seq), (20_002, 20_002));
}

#[test]
fn a_file_ending_in_megabytes_without_a_newline_is_refused_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut big = b"{}\n".to_vec();
    big.extend(vec![b'x'; 4 * MAX_LAST_LINE]);
    big.push(b'\n');
    std::fs::write(&path, big).unwrap();
    let err = AuditLog::open(&path, "test", AuditOptions::default(), at(0)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[test]
fn the_anchor_key_is_the_signers() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("a.log"), "test", signed(4), at(0)).unwrap();
    let expected: PublicKey = key().public_key();
    assert_eq!(log.anchor_key(), Some(expected));
}

#[test]
fn rotation_by_age_counts_from_the_files_first_line_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let options = || AuditOptions {
        rotate_bytes: 0,
        rotate_secs: 100,
        ..signed(1000)
    };
    let log = AuditLog::open(&path, "test", options(), at(0)).unwrap();
    log.record(at(0), "first", []);
    log.close(at(0));
    drop(log);
    // Restarted 90 s later: the file is still 90 s old, not new.
    let log = AuditLog::open(&path, "test", options(), at(90)).unwrap();
    log.record(at(95), "young", []);
    assert!(!dir.path().join("audit.log.000000000001").exists());
    log.record(at(101), "old", []);
    let rotated = dir.path().join("audit.log.000000000001");
    assert!(rotated.exists(), "rotated 100 s after the first line");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"old\""), "{text}");
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("\"old\"")
    );
}

#[test]
fn settings_take_whole_seconds_in_ms_and_check_the_anchor_copys_directory() {
    let mut s = AuditSettings {
        anchor_interval_ms: 1500,
        rotate_interval_ms: 0,
        anchor_copy: Some(PathBuf::from("/nonexistent-photondb-dir/audit.anchor")),
        ..AuditSettings::default()
    };
    let problems = s.problems(&[]);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("audit.anchor_interval_ms: must be whole seconds"));
    assert!(problems[1].contains("/nonexistent-photondb-dir does not exist"));
    s.anchor_interval_ms = 2000;
    s.rotate_interval_ms = 3_600_000;
    s.anchor_copy = None;
    assert!(s.problems(&[]).is_empty());
    let o = s.options().unwrap();
    assert_eq!((o.anchor_interval_secs, o.rotate_secs), (2, 3600));
}
