//! JSON comes back as it was stored: a document written over REST (plain or batch) or gRPC
//! reads back byte for byte over both, big integers, `-0`, exponents and escapes included;
//! an object that repeats a member name is refused at write time on every path.

use photondb_tests::gateway::{Gateway, HttpsClient, Protocol, Reply};
use photondb_tests::pb::storage_client::StorageClient;
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use tonic::Code;
use tonic::transport::Channel;

use crate::gateway_native_grpc::{gateway_channel, signed};

const T: &str = "/v1/dbs/f/tables/t";

/// Everything a round trip through `serde_json::Value` would change.
const FAITHFUL: &str = concat!(
    r#"{"n":12345678901234567890123,"z":-0,"f":1E2,"s":"\u00e9\n\"","#,
    r#""nested":{"big":-1.5e-300}}"#,
);

/// Repeated names: plainly, nested, and equal only once unescaped.
const REPEATS: [&str; 3] = [
    r#"{"a":1,"a":2}"#,
    r#"{"a":{"b":1,"b":2}}"#,
    r#"{"a":1,"\u0061":2}"#,
];

struct Stack {
    _certs: TestCerts,
    _storaged: Storaged,
    gateway: Gateway,
    rest: HttpsClient,
    grpc: StorageClient<Channel>,
}

async fn stack() -> Stack {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gateway = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let rest = gateway.client(Protocol::Http2).await.unwrap();
    rest.create_table("f", "t").await;
    let grpc = StorageClient::new(gateway_channel(&gateway).await);
    Stack {
        _certs: certs,
        _storaged: storaged,
        gateway,
        rest,
        grpc,
    }
}

fn batch_of(key: &str, value: &str) -> String {
    format!(r#"{{"operations":[{{"op":"put","key":"{key}","value":{value}}}]}}"#)
}

fn grpc_put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        table: table("f", "t"),
        key: key.into(),
        value: value.as_bytes().to_vec(),
        precondition: None,
    }
}

fn grpc_batch(key: &str, value: &str) -> pb::BatchRequest {
    let put = pb::BatchPut {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        precondition: None,
    };
    pb::BatchRequest {
        table: table("f", "t"),
        operations: vec![pb::BatchOperation {
            op: Some(pb::batch_operation::Op::Put(put)),
        }],
    }
}

/// The `value` member of a GET answer (`{"key":…,"version":N,"value":<raw>}`), cut from the
/// raw body rather than parsed, so that nothing on the test's side re-encodes it.
fn value_of(body: &[u8]) -> &[u8] {
    const MEMBER: &[u8] = b"\"value\":";
    let at = body
        .windows(MEMBER.len())
        .position(|w| w == MEMBER)
        .expect("a value member");
    body[at + MEMBER.len()..]
        .strip_suffix(b"}")
        .expect("value is the last member")
}

impl Stack {
    async fn rest_put(&self, key: &str, body: &'static str) -> Reply {
        let target = format!("{T}/docs/{key}");
        self.rest.put(&target, body).await.unwrap()
    }

    async fn rest_batch(&self, body: String) -> Reply {
        let target = format!("{T}/batch");
        self.rest.post(&target, body).await.unwrap()
    }

    /// `GET` of `path` under the table.
    async fn rest_get(&self, path: &str) -> Reply {
        let target = format!("{T}{path}");
        self.rest.get(&target).await.unwrap()
    }

    async fn rest_value(&self, key: &str) -> String {
        let reply = self.rest_get(&format!("/docs/{key}")).await;
        reply.expect(200, None);
        let value = value_of(&reply.body).to_vec();
        String::from_utf8(value).unwrap()
    }

    async fn grpc_value(&mut self, key: &str) -> String {
        let get = pb::GetRequest {
            table: table("f", "t"),
            key: key.into(),
        };
        let request = signed(&self.gateway, "Get", get);
        let got = self.grpc.get(request).await.unwrap().into_inner();
        let doc = got.document.expect("a document");
        String::from_utf8(doc.value).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_read_back_byte_for_byte() {
    let mut s = stack().await;
    s.rest_put("rest", FAITHFUL).await.expect(200, None);
    s.rest_batch(batch_of("batch", FAITHFUL))
        .await
        .expect(200, None);
    let put = signed(&s.gateway, "Put", grpc_put("grpc", FAITHFUL));
    s.grpc.put(put).await.unwrap();
    let batch = signed(&s.gateway, "Batch", grpc_batch("grpc-batch", FAITHFUL));
    s.grpc.batch(batch).await.unwrap();

    for key in ["rest", "batch", "grpc", "grpc-batch"] {
        assert_eq!(s.rest_value(key).await, FAITHFUL, "REST GET of {key}");
        assert_eq!(s.grpc_value(key).await, FAITHFUL, "gRPC Get of {key}");
    }

    // A scan page embeds the same bytes for each of the four.
    let page = s.rest_get("/docs?limit=10").await;
    page.expect(200, None);
    let embedded = format!(r#""value":{FAITHFUL}}}"#);
    assert_eq!(page.text().matches(&embedded).count(), 4, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_member_names_are_refused_on_every_path() {
    let mut s = stack().await;
    for body in REPEATS {
        let r = s.rest_put("dup", body).await;
        r.expect(400, Some("json_duplicate_key"));
        let r = s.rest_batch(batch_of("dup", body)).await;
        r.expect(400, Some("json_duplicate_key"));

        let put = signed(&s.gateway, "Put", grpc_put("dup", body));
        let refused = s.grpc.put(put).await.unwrap_err();
        let expected = (Code::InvalidArgument, "json_duplicate_key");
        assert_eq!((refused.code(), refused.message()), expected, "Put {body}");
        let batch = signed(&s.gateway, "Batch", grpc_batch("dup", body));
        let refused = s.grpc.batch(batch).await.unwrap_err();
        assert_eq!(
            (refused.code(), refused.message()),
            expected,
            "Batch {body}"
        );
    }
    // A repeat in the batch envelope itself is refused too, and nothing was stored.
    let envelope = r#"{"operations":[{"op":"put","key":"dup","key":"other","value":{}}]}"#;
    let r = s.rest_batch(envelope.to_owned()).await;
    r.expect(400, Some("json_duplicate_key"));
    for key in ["dup", "other"] {
        let r = s.rest_get(&format!("/docs/{key}")).await;
        r.expect(404, Some("not_found"));
    }
}
