//! `wakeway history`, `deployments` and `revisions`: what the console shows of a service, as
//! tables (or the API's own JSON with `-o json`).

use std::process::ExitCode;

use http::Method;
use wakeway::client::{AdminClient, format_deployments, format_history, format_revisions};

use super::{Output, fail, print_json, show};

pub async fn history(
    client: AdminClient,
    service: &str,
    range: &str,
    tail: usize,
    output: Output,
) -> ExitCode {
    let path = format!("/v1/services/{service}/history?range={range}");
    show(client.ok(Method::GET, &path, None).await, output, |v| {
        format_history(service, &v, tail)
    })
}

pub async fn deployments(client: AdminClient, service: &str, output: Output) -> ExitCode {
    let path = format!("/v1/services/{service}/deployments");
    show(client.ok(Method::GET, &path, None).await, output, |v| {
        format_deployments(&v)
    })
}

pub async fn revisions(client: AdminClient, service: &str, output: Output) -> ExitCode {
    let client = &client;
    let get = |what: &str| {
        let path = format!("/v1/services/{service}/{what}");
        async move { client.ok(Method::GET, &path, None).await }
    };
    let revisions = match get("revisions").await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if output == Output::Json {
        print_json(&revisions);
        return ExitCode::SUCCESS;
    }
    let traffic = match get("traffic").await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    print!("{}", format_revisions(&revisions, &traffic));
    ExitCode::SUCCESS
}
