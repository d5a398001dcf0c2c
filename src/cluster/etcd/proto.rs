//! The few messages of etcd's v3 API (`etcdserverpb`, `mvccpb`) wakeway sends and reads, written
//! out by hand with their field numbers: generating them would need `protoc` at build time.
//! Fields wakeway never sets or reads are left out; protobuf skips unknown fields.

/// Each message with its fields, their types and their `prost` attributes.
macro_rules! messages {
    ($($(#[$doc:meta])* $name:ident {
        $($(#[$fdoc:meta])* $field:ident: $ty:ty = $attr:tt),* $(,)?
    })*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, PartialEq, prost::Message)]
            pub struct $name {
                $($(#[$fdoc])* #[prost $attr] pub $field: $ty,)*
            }
        )*
    };
}

messages! {
    ResponseHeader { revision: i64 = (int64, tag = "3") }
    KeyValue {
        key: Vec<u8> = (bytes = "vec", tag = "1"),
        create_revision: i64 = (int64, tag = "2"),
        mod_revision: i64 = (int64, tag = "3"),
        value: Vec<u8> = (bytes = "vec", tag = "5"),
        lease: i64 = (int64, tag = "6"),
    }
    RangeRequest {
        key: Vec<u8> = (bytes = "vec", tag = "1"),
        range_end: Vec<u8> = (bytes = "vec", tag = "2"),
        revision: i64 = (int64, tag = "4"),
    }
    RangeResponse {
        header: Option<ResponseHeader> = (message, optional, tag = "1"),
        kvs: Vec<KeyValue> = (message, repeated, tag = "2"),
    }
    PutRequest {
        key: Vec<u8> = (bytes = "vec", tag = "1"),
        value: Vec<u8> = (bytes = "vec", tag = "2"),
        lease: i64 = (int64, tag = "3"),
    }
    PutResponse { header: Option<ResponseHeader> = (message, optional, tag = "1") }
    DeleteRangeRequest {
        key: Vec<u8> = (bytes = "vec", tag = "1"),
        range_end: Vec<u8> = (bytes = "vec", tag = "2"),
    }
    DeleteRangeResponse {
        header: Option<ResponseHeader> = (message, optional, tag = "1"),
        deleted: i64 = (int64, tag = "2"),
    }
}

/// `RequestOp` and `ResponseOp`: a range, a put or a delete-range, asked or answered.
macro_rules! op {
    ($op:ident, $field:ident, $module:ident, $oneof:tt, $range:ident, $put:ident, $delete:ident) => {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct $op {
            #[prost(oneof = $oneof, tags = "1, 2, 3")]
            pub $field: Option<$module::Op>,
        }

        pub mod $module {
            #[derive(Clone, PartialEq, prost::Oneof)]
            pub enum Op {
                #[prost(message, tag = "1")]
                Range(super::$range),
                #[prost(message, tag = "2")]
                Put(super::$put),
                #[prost(message, tag = "3")]
                DeleteRange(super::$delete),
            }
        }
    };
}

op!(
    RequestOp,
    request,
    request_op,
    "request_op::Op",
    RangeRequest,
    PutRequest,
    DeleteRangeRequest
);
op!(
    ResponseOp,
    response,
    response_op,
    "response_op::Op",
    RangeResponse,
    PutResponse,
    DeleteRangeResponse
);

/// `Compare.CompareResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CompareResult {
    Equal = 0,
    Greater = 1,
    Less = 2,
    NotEqual = 3,
}

/// `Compare.CompareTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CompareTarget {
    Version = 0,
    Create = 1,
    Mod = 2,
    Value = 3,
    Lease = 4,
}

messages! {
    Compare {
        result: i32 = (enumeration = "CompareResult", tag = "1"),
        target: i32 = (enumeration = "CompareTarget", tag = "2"),
        key: Vec<u8> = (bytes = "vec", tag = "3"),
        target_union: Option<compare::TargetUnion> =
            (oneof = "compare::TargetUnion", tags = "4, 5, 6, 7, 8"),
    }
}

pub mod compare {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum TargetUnion {
        #[prost(int64, tag = "4")]
        Version(i64),
        #[prost(int64, tag = "5")]
        CreateRevision(i64),
        #[prost(int64, tag = "6")]
        ModRevision(i64),
        #[prost(bytes = "vec", tag = "7")]
        Value(Vec<u8>),
        #[prost(int64, tag = "8")]
        Lease(i64),
    }
}

messages! {
    TxnRequest {
        compare: Vec<Compare> = (message, repeated, tag = "1"),
        success: Vec<RequestOp> = (message, repeated, tag = "2"),
        failure: Vec<RequestOp> = (message, repeated, tag = "3"),
    }
    TxnResponse {
        header: Option<ResponseHeader> = (message, optional, tag = "1"),
        succeeded: bool = (bool, tag = "2"),
        responses: Vec<ResponseOp> = (message, repeated, tag = "3"),
    }
    LeaseGrantRequest { ttl: i64 = (int64, tag = "1"), id: i64 = (int64, tag = "2") }
    LeaseGrantResponse {
        header: Option<ResponseHeader> = (message, optional, tag = "1"),
        id: i64 = (int64, tag = "2"),
        ttl: i64 = (int64, tag = "3"),
        error: String = (string, tag = "4"),
    }
    LeaseRevokeRequest { id: i64 = (int64, tag = "1") }
    LeaseRevokeResponse { header: Option<ResponseHeader> = (message, optional, tag = "1") }
    LeaseKeepAliveRequest { id: i64 = (int64, tag = "1") }
    LeaseKeepAliveResponse {
        header: Option<ResponseHeader> = (message, optional, tag = "1"),
        id: i64 = (int64, tag = "2"),
        /// Zero or less: the lease is gone.
        ttl: i64 = (int64, tag = "3"),
    }
    WatchRequest {
        request_union: Option<watch_request::RequestUnion> =
            (oneof = "watch_request::RequestUnion", tags = "1"),
    }
}

pub mod watch_request {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum RequestUnion {
        #[prost(message, tag = "1")]
        CreateRequest(super::WatchCreateRequest),
    }
}

messages! {
    WatchCreateRequest {
        key: Vec<u8> = (bytes = "vec", tag = "1"),
        range_end: Vec<u8> = (bytes = "vec", tag = "2"),
        start_revision: i64 = (int64, tag = "3"),
        progress_notify: bool = (bool, tag = "4"),
    }
    WatchResponse {
        header: Option<ResponseHeader> = (message, optional, tag = "1"),
        watch_id: i64 = (int64, tag = "2"),
        created: bool = (bool, tag = "3"),
        canceled: bool = (bool, tag = "4"),
        compact_revision: i64 = (int64, tag = "5"),
        cancel_reason: String = (string, tag = "6"),
        events: Vec<Event> = (message, repeated, tag = "11"),
    }
}

/// `mvccpb.Event.EventType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum EventType {
    Put = 0,
    Delete = 1,
}

messages! {
    Event {
        r#type: i32 = (enumeration = "EventType", tag = "1"),
        kv: Option<KeyValue> = (message, optional, tag = "2"),
    }
}
