//! `backup-client --framing block` against a test double of the C++ server of
//! NaftaliProjects/File-Transfer-and_Backup-in-cpp-and-python, written from
//! its `Server/Request.cpp`, `Server/Response.cpp` and `Server/FileManage.cpp`:
//! it reads the header block whole, `name_len` natively (little-endian), a
//! backup's first data block whole and then exactly the bytes still due,
//! stores files under 1020 bytes padded to 1020, lists full paths, sends
//! restores with its spare zero blocks (and no size block for an empty
//! file), answers a delete of a missing file with nothing, and closes after
//! every response.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use support::*;

const MAX_LENGTH: usize = 1024;

type Files = Arc<Mutex<BTreeMap<(u32, String), Vec<u8>>>>;

fn start_double() -> (SocketAddr, Files) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files: Files = Arc::default();
    let shared = files.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let files = shared.clone();
            // One thread per session, as its main.cpp; errors end the session.
            std::thread::spawn(move || {
                let _ = session(sock?, &files);
                std::io::Result::Ok(())
            });
        }
    });
    (addr, files)
}

/// `Response::sendHeader`: version, status, and for a named answer
/// `strlen(name)` and the name; 1024 bytes.
fn header(status: u16, name: Option<&str>) -> Vec<u8> {
    let mut buffer = vec![0u8; MAX_LENGTH];
    buffer[0] = 1;
    buffer[1..3].copy_from_slice(&status.to_le_bytes());
    if let Some(name) = name {
        buffer[3..5].copy_from_slice(&(name.len() as u16).to_le_bytes());
        buffer[5..5 + name.len()].copy_from_slice(name.as_bytes());
    }
    buffer
}

fn session(mut sock: TcpStream, files: &Files) -> std::io::Result<()> {
    let mut buffer = [0u8; MAX_LENGTH];
    sock.read_exact(&mut buffer)?;
    let user = u32::from_le_bytes(buffer[0..4].try_into().unwrap());
    let op = buffer[5];
    let name_len = u16::from_le_bytes([buffer[6], buffer[7]]) as usize;
    // memcpy of name_len bytes, then used as a C string: up to the first NUL.
    let raw = &buffer[8..(8 + name_len).min(MAX_LENGTH)];
    let name = String::from_utf8_lossy(raw.split(|&b| b == 0).next().unwrap()).into_owned();
    let key = (user, name.clone());
    match op {
        202 => {
            let mine: Vec<String> = files
                .lock()
                .unwrap()
                .keys()
                .filter(|(u, _)| *u == user)
                .map(|(u, n)| format!("c:\\backupsvr\\{u}\\{n}\n"))
                .collect();
            if mine.is_empty() {
                sock.write_all(&header(1002, None))?;
            } else {
                sock.write_all(&header(211, None))?;
                // FileManage::listFiles: full blocks, then the rest unpadded.
                let text: Vec<u8> = mine.concat().into_bytes();
                let all = [&(text.len() as u32).to_le_bytes()[..], &text].concat();
                for chunk in all.chunks(MAX_LENGTH) {
                    sock.write_all(chunk)?;
                }
            }
        }
        201 => {
            // is_empty() on a missing path throws: the session ends, unanswered.
            let Some(_) = files.lock().unwrap().remove(&key) else { return Ok(()) };
            sock.write_all(&header(212, Some(&name)))?;
        }
        200 => {
            let stored = files.lock().unwrap().get(&key).cloned();
            let Some(file) = stored else {
                sock.write_all(&header(1001, Some(&name)))?;
                return Ok(());
            };
            sock.write_all(&header(210, Some(&name)))?;
            // FileManage::restoreFile, with its arithmetic: after the first
            // block it counts 4 bytes sent, so spare zero blocks follow.
            let size = file.len();
            let mut block = vec![0u8; MAX_LENGTH];
            block[..4].copy_from_slice(&(size as u32).to_le_bytes());
            let mut pos = 0;
            let mut total = 0;
            if size > 0 {
                let n = size.min(MAX_LENGTH - 4);
                block[4..4 + n].copy_from_slice(&file[..n]);
                pos = n;
                sock.write_all(&block)?;
                total = 4;
            }
            while total < size {
                let to_read = MAX_LENGTH.min(size - total);
                let mut block = vec![0u8; MAX_LENGTH];
                let n = to_read.min(size - pos);
                block[..n].copy_from_slice(&file[pos..pos + n]);
                pos += n;
                total += to_read;
                sock.write_all(&block)?;
            }
        }
        100 => {
            // FileManage::backUpAFile: the whole first block is written out.
            sock.read_exact(&mut buffer)?;
            let size = u32::from_le_bytes(buffer[0..4].try_into().unwrap()) as usize;
            let mut stored = buffer[4..].to_vec();
            let mut total = stored.len();
            while total < size {
                let to_read = MAX_LENGTH.min(size - total);
                let mut chunk = vec![0u8; to_read];
                sock.read_exact(&mut chunk)?;
                stored.extend_from_slice(&chunk);
                total += to_read;
            }
            files.lock().unwrap().insert(key, stored);
            sock.write_all(&header(212, Some(&name)))?;
        }
        _ => {}
    }
    Ok(())
}

const SIZES: [usize; 7] = [1024, 0, 1, 1019, 1020, 1021, 1 << 20];

fn contents(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 11 % 251) as u8 + 1).collect()
}

/// What its server keeps of a file: padded to 1020 bytes when shorter.
fn kept(size: usize) -> Vec<u8> {
    let mut data = contents(size);
    if data.len() < MAX_LENGTH - 4 {
        data.resize(MAX_LENGTH - 4, 0);
    }
    data
}

#[test]
fn the_classic_run_and_every_command_work_against_its_server() {
    let (addr, files) = start_double();
    let work = Workdir::new();
    let mut info = String::new();
    for size in SIZES {
        work.write(&format!("f{size}.bin"), &contents(size));
        info.push_str(&format!("f{size}.bin\n"));
    }
    work.write("backup.info", info.as_bytes());
    // As its own client finds the server: server.info, here naming the framing.
    work.write("server.info", format!("{addr} block\n").as_bytes());
    let out = output_within(&work, &["--user", "1234", "run"], 60);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("list: no files yet"), "{text}");
    assert!(text.contains("restore f1024.bin as tmp: 1024 bytes"), "{text}");
    assert!(text.contains("restore f1024.bin again: not found, as expected"), "{text}");
    assert_eq!(std::fs::read(work.path("tmp")).unwrap(), contents(1024));
    for size in SIZES.into_iter().skip(1) {
        let stored = files.lock().unwrap().get(&(1234, format!("f{size}.bin"))).cloned().unwrap();
        assert!(stored == kept(size), "size {size}: its server got {} bytes", stored.len());
    }
    assert!(!files.lock().unwrap().contains_key(&(1234, "f1024.bin".to_string())));

    // The same through --framing block and --server, command by command.
    std::fs::remove_file(work.path("server.info")).unwrap();
    let server = addr.to_string();
    let base = ["--framing", "block", "--server", server.as_str(), "--user", "1234"];
    assert_exit(&output_within(&work, &with(&base, &["backup", "f1024.bin"]), 30), 0);
    std::fs::create_dir(work.path("out")).unwrap();
    for size in SIZES {
        let name = format!("f{size}.bin");
        let out = output_within(&work, &with(&base, &["restore", &name, "-o", "out/"]), 60);
        assert_exit(&out, 0);
        let restored = std::fs::read(work.path("out").join(&name)).unwrap();
        let expected = if size == 1024 { contents(1024) } else { kept(size) };
        assert!(restored == expected, "size {size}: restored {} bytes", restored.len());
    }
    let out = output_within(&work, &with(&base, &["list"]), 30);
    assert_exit(&out, 0);
    // Its list holds paths; they are printed as sent (backslashes escaped).
    assert!(stdout(&out).lines().any(|l| l == r"c:\\backupsvr\\1234\\f0.bin"), "{}", stdout(&out));
    assert_exit(&output_within(&work, &with(&base, &["delete", "f0.bin"]), 30), 0);
    let out = output_within(&work, &with(&base, &["restore", "f0.bin", "-o", "gone.bin"]), 30);
    assert_exit(&out, 3);
    // Its server answers a delete of a missing file with a closed connection.
    assert_exit(&output_within(&work, &with(&base, &["delete", "f0.bin"]), 30), 6);
}

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    [base, more].concat()
}
