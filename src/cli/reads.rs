//! `wakeway history`, `deployments` and `revisions`: what the console shows of a service, as
//! tables (or the API's own JSON with `-o json`).

use std::process::ExitCode;

use http::Method;
use wakeway::client::{AdminClient, format_deployments, format_history, format_revisions};

use super::{Output, fail, print_json};

pub async fn history(
    client: AdminClient,
    service: &str,
    range: &str,
    tail: usize,
    output: Output,
) -> ExitCode {
    let path = format!("/v1/services/{service}/history?range={range}");
    match client.ok(Method::GET, &path, None).await {
        Ok(v) if output == Output::Json => {
            print_json(&v);
            ExitCode::SUCCESS
        }
        Ok(v) => {
            print!("{}", format_history(service, &v, tail));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub async fn deployments(client: AdminClient, service: &str, output: Output) -> ExitCode {
    let path = format!("/v1/services/{service}/deployments");
    match client.ok(Method::GET, &path, None).await {
        Ok(v) if output == Output::Json => {
            print_json(&v);
            ExitCode::SUCCESS
        }
        Ok(v) => {
            print!("{}", format_deployments(&v));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub async fn revisions(client: AdminClient, service: &str, output: Output) -> ExitCode {
    let revisions = match client
        .ok(
            Method::GET,
            &format!("/v1/services/{service}/revisions"),
            None,
        )
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if output == Output::Json {
        print_json(&revisions);
        return ExitCode::SUCCESS;
    }
    let traffic = match client
        .ok(
            Method::GET,
            &format!("/v1/services/{service}/traffic"),
            None,
        )
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    print!("{}", format_revisions(&revisions, &traffic));
    ExitCode::SUCCESS
}
