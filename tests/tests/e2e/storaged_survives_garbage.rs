//! Garbage from an authenticated peer costs that peer its call or its connection, never the
//! daemon: another client keeps completing calls throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use rand::RngCore as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const MAX_MESSAGE: usize = 64 * 1024;

/// Sends raw bytes as the gRPC message and returns the raw reply message.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawCoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCoder;
    type Decoder = RawCoder;

    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }

    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

impl Encoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Keeps a well-behaved client busy; counts completed calls and fails on any error.
struct Bystander {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Bystander {
    async fn start(storaged: &Storaged) -> anyhow::Result<Self> {
        let mut c = storaged.client().await?;
        photondb_tests::create_table(&mut c, "app", "t").await?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !s.load(Ordering::SeqCst) {
                let key = format!("k{}", i % 50);
                let v = c
                    .put(pb::PutRequest {
                        table: table("app", "t"),
                        key: key.clone(),
                        value: format!("{{\"i\":{i}}}").into_bytes(),
                        precondition: None,
                    })
                    .await?
                    .into_inner()
                    .version;
                let got = c
                    .get(pb::GetRequest {
                        table: table("app", "t"),
                        key,
                    })
                    .await?
                    .into_inner()
                    .document
                    .expect("just written");
                anyhow::ensure!(got.version == v, "read {} after writing {v}", got.version);
                i += 1;
                d.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        Ok(Self { stop, done, task })
    }

    fn completed(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the bystander completes `more` further calls.
    async fn progresses(&self, more: u64) {
        let target = self.completed() + more;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.completed() < target {
            assert!(
                !self.task.is_finished(),
                "the bystander stopped (it hit an error)"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bystander made no progress"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await??;
        Ok(self.done.load(Ordering::SeqCst))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_after_the_handshake_close_only_that_connection() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let bystander = Bystander::start(&storaged).await?;
    bystander.progresses(5).await;
    for round in 0..5 {
        let mut tls = storaged.raw_tls(storaged.gateway_client()).await?;
        let mut random = vec![0u8; 16 * 1024];
        rand::thread_rng().fill_bytes(&mut random);
        let mut junk = Vec::new();
        if round % 2 == 1 {
            // A valid preface first, so the junk lands in the frame parser.
            junk.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        }
        junk.extend_from_slice(&random);
        // The server may close while we are still writing; that is fine.
        let _ = tls.write_all(&junk).await;
        let _ = tls.flush().await;
        // The server closes the connection: read reaches EOF or an error, within a deadline.
        let mut sink = vec![0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match tls.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "round {round}: garbage connection left open"
        );
        bystander.progresses(3).await;
    }
    let done = bystander.finish().await?;
    assert!(done >= 20, "{done}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_protobuf_is_refused_per_call() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let bystander = Bystander::start(&storaged).await?;
    let channel = storaged.channel().await?;
    let mut raw = tonic::client::Grpc::new(channel);
    for garbage in [
        vec![0xFF; 64],               // field 31, wire type 7: invalid
        vec![0x12, 0x80, 0x80, 0x80], // key field with a truncated length varint
        vec![0x12, 0x05, b'a', 0xC3], // length runs past the end
        vec![0x0A, 0x02, 0x0A, 0x7F], // table ref with a truncated nested field
    ] {
        raw.ready().await?;
        let path = http::uri::PathAndQuery::from_static("/photondb.v1.Storage/Put");
        let status = raw
            .unary::<Vec<u8>, Vec<u8>, RawCodec>(
                tonic::Request::new(garbage.clone()),
                path,
                RawCodec,
            )
            .await
            .expect_err("invalid protobuf must be refused");
        assert_eq!(status.code(), Code::Internal, "{garbage:?}: {status:?}");
        assert!(
            status
                .message()
                .contains("failed to decode Protobuf message"),
            "{status:?}"
        );
        bystander.progresses(3).await;
    }
    // The same channel still serves valid calls.
    let valid = prost::Message::encode_to_vec(&pb::ListDatabasesRequest::default());
    raw.ready().await?;
    let reply = raw
        .unary::<Vec<u8>, Vec<u8>, RawCodec>(
            tonic::Request::new(valid),
            http::uri::PathAndQuery::from_static("/photondb.v1.Storage/ListDatabases"),
            RawCodec,
        )
        .await?
        .into_inner();
    let list: pb::ListDatabasesResponse = prost::Message::decode(reply.as_slice())?;
    assert_eq!(list.databases, vec!["app".to_owned()]);
    bystander.finish().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_is_out_of_range() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        limits: vec![format!("max_message_bytes = {MAX_MESSAGE}")],
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let bystander = Bystander::start(&storaged).await?;
    let mut c = storaged.client().await?;
    let put = |len: usize| pb::PutRequest {
        table: table("app", "t"),
        key: "big".into(),
        value: vec![b'x'; len],
        precondition: None,
    };
    for _ in 0..3 {
        let status = c
            .put(put(MAX_MESSAGE + 1))
            .await
            .expect_err("a message over max_message_bytes");
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("the limit is: {MAX_MESSAGE} bytes")),
            "{status:?}"
        );
        bystander.progresses(3).await;
    }
    let missing = c
        .get(pb::GetRequest {
            table: table("app", "t"),
            key: "big".into(),
        })
        .await
        .expect_err("not written");
    assert_eq!(missing.code(), Code::NotFound);
    // Just under the limit (the message is the value plus a few bytes of framing) is served.
    c.put(put(MAX_MESSAGE - 64)).await?;
    bystander.finish().await?;
    Ok(())
}
