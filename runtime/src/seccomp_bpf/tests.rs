use super::*;
use std::os::unix::fs::PermissionsExt;

fn profile(caps: &[&str]) -> LinuxSeccomp {
    let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    serde_json::from_value(crate::seccomp::profile(&caps)).unwrap()
}

/// BPF_RET | BPF_K: the kernel refuses a program that does not end in one
const RET_K: u16 = 0x06;

#[test]
fn berths_profile_compiles_to_a_bounded_program_ending_in_ret() {
    for caps in [&[][..], &["CAP_SYS_ADMIN"][..]] {
        let p = profile(caps);
        assert!(precompilable(&p));
        let prog = compile(&p).unwrap();
        assert!(prog.len() > 10 && prog.len() <= MAX_INSNS, "{prog:?}");
        let bytes = prog.to_bytes();
        let last = &bytes[bytes.len() - INSN..];
        assert_eq!(u16::from_ne_bytes([last[0], last[1]]), RET_K);
        assert_eq!(compile(&p).unwrap(), prog, "deterministic");
        assert_eq!(Program::from_bytes(&bytes).unwrap(), prog);
    }
    // the profile differs by capabilities, and so does the program
    assert_ne!(
        compile(&profile(&[])).unwrap(),
        compile(&profile(&["CAP_SYS_ADMIN"])).unwrap()
    );
    assert_ne!(
        cache_key(&profile(&[])),
        cache_key(&profile(&["CAP_SYS_ADMIN"]))
    );
}

#[test]
fn only_whole_bounded_programs_are_accepted() {
    assert!(Program::from_bytes(&[]).is_err());
    assert!(Program::from_bytes(&[0; 12]).is_err());
    assert!(Program::from_bytes(&vec![0; (MAX_INSNS + 1) * INSN]).is_err());
    assert_eq!(Program::from_bytes(&[0; 16]).unwrap().len(), 2);
    assert_eq!(
        Program::from_bytes(&vec![0; MAX_INSNS * INSN])
            .unwrap()
            .len(),
        MAX_INSNS
    );
}

#[test]
fn flags_and_notify_stay_with_libcontainer_for_the_init() {
    let mut v = crate::seccomp::profile(&[]);
    v["flags"] = serde_json::json!(["SECCOMP_FILTER_FLAG_LOG"]);
    let p: LinuxSeccomp = serde_json::from_value(v).unwrap();
    assert!(!precompilable(&p));
    // ... but exec loads them itself: the flags change the load, not the program
    let plain: LinuxSeccomp = serde_json::from_value(crate::seccomp::profile(&[])).unwrap();
    assert_eq!(compile(&p).unwrap(), compile(&plain).unwrap());
    assert_eq!(load_flags(&p), libc::SECCOMP_FILTER_FLAG_LOG);
    assert_eq!(load_flags(&plain), 0);
    assert!(!has_notify(&p));
    let mut v = crate::seccomp::profile(&[]);
    v["syscalls"][0]["action"] = "SCMP_ACT_NOTIFY".into();
    let p: LinuxSeccomp = serde_json::from_value(v).unwrap();
    assert!(!precompilable(&p));
    assert!(has_notify(&p));
    assert!(matches!(compile(&p), Err(BpfError::Unsupported(_))));
    // an empty flags list changes nothing
    let mut v = crate::seccomp::profile(&[]);
    v["flags"] = serde_json::json!([]);
    assert!(precompilable(&serde_json::from_value(v).unwrap()));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_cache_is_root_only_used_and_never_trusted_when_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run/seccomp");
    let p = profile(&[]);
    let good = compile(&p).unwrap();
    let path = cache_path(&dir, &p);

    assert_eq!(cached(&dir, &p).unwrap(), good);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600);
    let stored = std::fs::read(&path).unwrap();
    assert_eq!(stored.len(), good.len() * INSN + SUM);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temp files left"
    );

    // a valid entry is what is used: proven with one that differs
    let other = compile(&profile(&["CAP_SYS_ADMIN"])).unwrap();
    let mut data = other.to_bytes();
    data.extend_from_slice(&Sha256::digest(&data));
    std::fs::write(&path, &data).unwrap();
    assert_eq!(cached(&dir, &p).unwrap(), other);

    // damaged entries: recompiled (and rewritten), never loaded as they are
    let damaged: Vec<Vec<u8>> = vec![
        Vec::new(),
        stored[..stored.len() - 1].to_vec(),
        stored[..stored.len() - SUM - INSN].to_vec(),
        stored[SUM..].to_vec(),
        {
            let mut d = stored.clone();
            d[3] ^= 1;
            d
        },
        vec![0; MAX_INSNS * INSN + SUM + INSN],
    ];
    for d in damaged {
        std::fs::write(&path, &d).unwrap();
        assert_eq!(cached(&dir, &p).unwrap(), good, "{} bytes", d.len());
        assert_eq!(std::fs::read(&path).unwrap(), stored, "rewritten");
    }
    // a valid entry that others could have written, or in a directory
    // others can reach, is not trusted either
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(&path, &data).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(cached(&dir, &p).unwrap(), good, "a 0644 entry");
    assert_eq!(mode(&path), 0o600, "rewritten root-only");
    std::fs::write(&path, &data).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(cached(&dir, &p).unwrap(), good, "an open directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // a symlink in its place is not followed
    std::fs::remove_file(&path).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::write(&elsewhere, &data).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert_eq!(cached(&dir, &p).unwrap(), good);
    assert_eq!(std::fs::read(&elsewhere).unwrap(), data, "target untouched");
}

#[test]
fn an_unwritable_cache_still_gives_the_program() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let p = profile(&[]);
    assert_eq!(cached(&file, &p).unwrap(), compile(&p).unwrap());
}
