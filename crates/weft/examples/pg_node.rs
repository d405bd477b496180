//! A process-group node you can drive from a terminal or a test.
//!
//! It starts a weft node, joins `--members K` mailboxes to `--group G`,
//! registers an `echo` mailbox that answers calls, and then reads commands
//! on stdin, one per line, answering with one JSON line each on stdout:
//!
//! ```text
//! members                  {"members":["<n1#..>", ...]}
//! publish TEXT             {"published":{"local":2,"remote":1}}
//! call NODE TEXT           {"reply":"TEXT"} | {"error":"node_down"}
//! ```
//! Every message a member receives prints `{"got":"TEXT","member":"<pid>"}`.
//!
//! ```sh
//! echo -n 0123456789abcdef0123 > /tmp/secret
//! cargo run -p weft --example pg_node -- --name a --listen 127.0.0.1:7501 \
//!     --secret-file /tmp/secret --members 2
//! cargo run -p weft --example pg_node -- --name b --listen 127.0.0.1:7502 \
//!     --join 127.0.0.1:7501 --secret-file /tmp/secret --members 1
//! ```

mod support;

use std::time::Duration;
use support::json_str;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use weft::{CallError, Message, Node, Target};

struct Args {
    name: String,
    listen: String,
    join: Vec<String>,
    secret_file: String,
    members: usize,
    group: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        name: String::new(),
        listen: "127.0.0.1:0".into(),
        join: Vec::new(),
        secret_file: String::new(),
        members: 1,
        group: "g".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => a.name = value()?,
            "--listen" => a.listen = value()?,
            "--join" => a.join.push(value()?),
            "--secret-file" => a.secret_file = value()?,
            "--members" => a.members = value()?.parse().map_err(|e| format!("--members: {e}"))?,
            "--group" => a.group = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.name.is_empty() || a.secret_file.is_empty() {
        return Err("--name and --secret-file are required".into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("pg_node: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let args = parse()?;
    let config = support::node_config(&args.name, &args.listen, &args.join, &args.secret_file)?;
    let node = Node::start(config).await.map_err(|e| e.to_string())?;

    for _ in 0..args.members {
        let m = node.mailboxes().spawn();
        node.groups()
            .join(&args.group, m.pid())
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            while let Some(env) = m.recv().await {
                let text = String::from_utf8_lossy(&env.message.payload).to_string();
                println!(
                    "{{\"got\":{},\"member\":{}}}",
                    json_str(&text),
                    json_str(&m.pid().to_string())
                );
            }
        });
    }
    let echo = node.mailboxes().spawn();
    node.mailboxes()
        .register("echo", &echo)
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(env) = echo.recv().await {
            let _ = echo.reply(&env, env.message.clone()).await;
        }
    });
    println!(
        "{{\"ready\":{},\"incarnation\":{},\"addr\":{}}}",
        json_str(&node.id().name),
        node.id().incarnation,
        json_str(&node.addr().to_string())
    );

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("members"), _, _) => {
                let pids: Vec<String> = node
                    .groups()
                    .members(&args.group)
                    .iter()
                    .map(|p| json_str(&p.to_string()))
                    .collect();
                println!("{{\"members\":[{}]}}", pids.join(","));
            }
            (Some("publish"), Some(first), rest) => {
                let text = match rest {
                    Some(r) => format!("{first} {r}"),
                    None => first.to_string(),
                };
                match node
                    .groups()
                    .publish(&args.group, Message::new("text", Bytes::from(text)))
                    .await
                {
                    Ok(r) => println!(
                        "{{\"published\":{{\"local\":{},\"remote\":{}}}}}",
                        r.local_delivered, r.remote_nodes
                    ),
                    Err(e) => println!("{{\"error\":{}}}", json_str(&e.to_string())),
                }
            }
            (Some("call"), Some(target), Some(text)) => {
                let to = Target::Named {
                    node: target.to_string(),
                    name: "echo".into(),
                };
                let msg = Message::new("text", Bytes::from(text.to_string()));
                match node
                    .mailboxes()
                    .call(to, msg)
                    .timeout(Duration::from_secs(30))
                    .await
                {
                    Ok(reply) => println!(
                        "{{\"reply\":{}}}",
                        json_str(&String::from_utf8_lossy(&reply.payload))
                    ),
                    Err(CallError::NodeDown(_)) => println!("{{\"error\":\"node_down\"}}"),
                    Err(e) => println!("{{\"error\":{}}}", json_str(&e.to_string())),
                }
            }
            _ => println!("{{\"error\":\"unknown command\"}}"),
        }
    }
    node.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
