//! gRPC probes: one `grpc.health.v1.Health/Check` call over HTTP/2
//! cleartext (prior knowledge), as kubelet makes it. A minimal client: the
//! request headers are HPACK literals (no table, no Huffman), and the answer
//! is read from the response message alone (`status: SERVING`), so response
//! headers never need decoding; anything else (no message, an error in the
//! trailers, a reset) is a failure. Frames and the message are bounded.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// The largest frame accepted (HTTP/2's default SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;
/// The most response bytes read before giving up.
const MAX_BODY: usize = 64 << 10;

/// `HealthCheckResponse.ServingStatus`.
pub const SERVING: u64 = 1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK string literal, not Huffman-coded (7-bit prefix integer length).
fn hpack_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128 + 128) as u8);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s.as_bytes());
}

/// The request's header block: literal fields without indexing, new names.
pub fn request_headers(authority: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "kube-probe/berth"),
    ] {
        b.push(0x00);
        hpack_str(&mut b, k);
        hpack_str(&mut b, v);
    }
    b
}

/// A length-prefixed gRPC message holding `HealthCheckRequest{service}`.
pub fn request_message(service: &str) -> Vec<u8> {
    let mut pb = Vec::new();
    if !service.is_empty() {
        pb.push(0x0a); // field 1, length-delimited
        let mut n = service.len();
        while n >= 0x80 {
            pb.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        pb.push(n as u8);
        pb.extend_from_slice(service.as_bytes());
    }
    let mut m = vec![0u8];
    m.extend_from_slice(&(pb.len() as u32).to_be_bytes());
    m.extend(pb);
    m
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The `status` of a length-prefixed `HealthCheckResponse` (0, UNKNOWN,
/// when absent, as protobuf's default).
pub fn response_status(body: &[u8]) -> Result<u64, String> {
    if body.len() < 5 {
        return Err("no response message".into());
    }
    if body[0] != 0 {
        return Err("compressed response messages are not supported".into());
    }
    let n = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let mut pb = body.get(5..5 + n).ok_or("truncated response message")?;
    let mut status = 0;
    while !pb.is_empty() {
        let (tag, used) = varint(pb).ok_or("malformed response message")?;
        pb = &pb[used..];
        match tag & 7 {
            0 => {
                let (v, used) = varint(pb).ok_or("malformed response message")?;
                if tag >> 3 == 1 {
                    status = v;
                }
                pb = &pb[used..];
            }
            2 => {
                let (len, used) = varint(pb).ok_or("malformed response message")?;
                let skip = used + len as usize;
                pb = pb.get(skip..).ok_or("malformed response message")?;
            }
            _ => return Err("malformed response message".into()),
        }
    }
    Ok(status)
}

/// One Health/Check call; `Ok(status)` when a response message came back.
pub async fn check(addr: SocketAddr, service: &str) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial {addr}: {e}"))?;
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &request_headers(&addr.to_string()),
    ));
    out.extend(frame(DATA, END_STREAM, 1, &request_message(service)));
    let io = |e: std::io::Error| format!("{addr}: {e}");
    s.write_all(&out).await.map_err(io)?;
    let mut body = Vec::new();
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.map_err(io)?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            return Err(format!("{addr}: frame of {len} bytes is too large"));
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.map_err(io)?;
        match kind {
            SETTINGS if flags & ACK == 0 => {
                s.write_all(&frame(SETTINGS, ACK, 0, &[]))
                    .await
                    .map_err(io)?;
            }
            PING if flags & ACK == 0 => {
                s.write_all(&frame(PING, ACK, 0, &payload))
                    .await
                    .map_err(io)?;
            }
            GOAWAY => return Err(format!("{addr}: the server closed the connection (GOAWAY)")),
            RST_STREAM if stream == 1 => return Err(format!("{addr}: the server reset the call")),
            DATA if stream == 1 => {
                body.extend_from_slice(&payload);
                if body.len() > MAX_BODY {
                    return Err(format!("{addr}: response larger than {MAX_BODY} bytes"));
                }
                if flags & END_STREAM != 0 {
                    break;
                }
            }
            HEADERS if stream == 1 && flags & END_STREAM != 0 => break,
            _ => {}
        }
    }
    // a call that failed has trailers (grpc-status) and no message
    response_status(&body).map_err(|e| {
        format!("{addr}: {e} (the server answered the call with an error, e.g. an unknown service)")
    })
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(request_message(""), [0, 0, 0, 0, 0]);
        assert_eq!(request_message("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(SERVING));
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        assert_eq!(response_status(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(response_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(response_status(&[]).is_err());
        let h = request_headers("10.0.0.1:50051");
        assert_eq!(&h[..9], b"\x00\x07:method");
    }

    async fn read_frame(s: &mut TcpStream) -> (u8, u8, Vec<u8>) {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.unwrap();
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).await.unwrap();
        (head[3], head[4], p)
    }

    /// A server speaking the HTTP/2 frame layer: checks what the client sends
    /// and answers `status` (or, for `None`, trailers only: an error).
    async fn server(status: Option<u8>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut pre = [0u8; 24];
            s.read_exact(&mut pre).await.unwrap();
            assert_eq!(&pre[..], PREFACE);
            assert_eq!(read_frame(&mut s).await.0, SETTINGS);
            s.write_all(&frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]))
                .await
                .unwrap();
            let (k, f, h) = read_frame(&mut s).await;
            assert_eq!((k, f), (HEADERS, END_HEADERS));
            assert!(h.windows(28).any(|w| w == b"/grpc.health.v1.Health/Check"));
            let (k, f, d) = read_frame(&mut s).await;
            assert_eq!((k, f), (DATA, END_STREAM));
            assert_eq!(d, request_message("db"));
            // the client acknowledges our settings
            assert_eq!(read_frame(&mut s).await.0, SETTINGS);
            s.write_all(&frame(HEADERS, END_HEADERS, 1, &[0x88]))
                .await
                .unwrap();
            if let Some(st) = status {
                s.write_all(&frame(DATA, 0, 1, &[0, 0, 0, 0, 2, 0x08, st]))
                    .await
                    .unwrap();
            }
            s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x00]))
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        addr
    }

    #[tokio::test]
    async fn health_check_over_h2c() {
        assert_eq!(check(server(Some(1)).await, "db").await, Ok(SERVING));
        assert_eq!(check(server(Some(2)).await, "db").await, Ok(2));
        let e = check(server(None).await, "db").await.unwrap_err();
        assert!(e.contains("no response message"), "{e}");
    }
}
