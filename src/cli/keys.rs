//! `phone-manager keys …`: create, list, rotate and deactivate API keys.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use crate::{
    cli::{KeyArg, KeysCommand, ScopeArg},
    domain::api_keys::{ApiKeys, KeySelector},
    error::ApiError,
    model::{ApiKey, IssuedKey, KeyScope},
};

pub async fn run(pool: &PgPool, command: KeysCommand) -> anyhow::Result<()> {
    let api_keys = ApiKeys::new(pool.clone());
    match command {
        KeysCommand::Create { name, admin, scope, expires_in_days, json } => {
            let scope = match scope {
                ScopeArg::Full => KeyScope::Full,
                ScopeArg::App => KeyScope::App,
            };
            let issued =
                api_keys.create_with_scope(&name, scope, admin, expires_in_days).await.map_err(describe)?;
            print_issued(&issued, json, "Created");
        }
        KeysCommand::List { json } => {
            let keys = api_keys.list().await.map_err(describe)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_table(&keys);
            }
        }
        KeysCommand::Rotate { key, json } => {
            let (old, issued) = api_keys.rotate(&selector(key)).await.map_err(describe)?;
            if json {
                println!("{}", json!({"deactivated": old.prefix, "new_key": issued}));
            } else {
                println!("Deactivated key {} ({})", old.prefix, old.name);
                print_issued(&issued, false, "Created replacement");
            }
        }
        KeysCommand::Deactivate { key, json } => {
            let key = api_keys.deactivate(&selector(key)).await.map_err(describe)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&key)?);
            } else {
                println!("Deactivated key {} ({}, id {})", key.prefix, key.name, key.id);
            }
        }
    }
    Ok(())
}

fn selector(arg: KeyArg) -> KeySelector {
    match (arg.id, arg.prefix) {
        (Some(id), _) => KeySelector::Id(id),
        (None, Some(prefix)) => KeySelector::Prefix(prefix),
        // clap's argument group makes one of the two required.
        (None, None) => unreachable!("clap requires --prefix or --id"),
    }
}

fn print_issued(issued: &IssuedKey, json: bool, verb: &str) {
    if json {
        println!("{}", serde_json::to_string(issued).expect("an issued key serializes"));
        return;
    }
    println!(
        "{verb} {}{} API key {} \"{}\" (id {}, expires {})",
        if issued.is_admin { "admin " } else { "" },
        issued.scope.as_str(),
        issued.prefix,
        issued.name,
        issued.id,
        when(issued.expires_at, "never"),
    );
    println!("Key (shown only this once, store it now): {}", issued.key);
}

fn print_table(keys: &[ApiKey]) {
    if keys.is_empty() {
        println!("No API keys. Create one with: phone-manager keys create --name NAME");
        return;
    }
    println!(
        "{:>5}  {:<8}  {:<24}  {:<6}  {:<5}  {:<5}  {:<20}  {:<20}  {:<20}",
        "ID", "PREFIX", "NAME", "SCOPE", "ACTIVE", "ADMIN", "CREATED", "LAST USED", "EXPIRES"
    );
    for key in keys {
        println!(
            "{:>5}  {:<8}  {:<24}  {:<5}  {:<6}  {:<5}  {:<20}  {:<20}  {:<20}",
            key.id,
            key.prefix,
            truncate(&key.name, 24),
            key.scope.as_str(),
            if key.is_active { "yes" } else { "no" },
            if key.is_admin { "yes" } else { "no" },
            when(Some(key.created_at), "-"),
            when(key.last_used_at, "never"),
            when(key.expires_at, "never"),
        );
    }
}

fn when(at: Option<DateTime<Utc>>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        text.chars().take(width - 1).chain(['…']).collect()
    }
}

/// Turns a domain error into a one-line CLI message that names the offending option.
fn describe(err: ApiError) -> anyhow::Error {
    match err {
        ApiError::Validation { details, .. } if !details.is_empty() => {
            let problems: Vec<String> =
                details.iter().map(|d| format!("--{}: {}", d.field.replace('_', "-"), d.message)).collect();
            anyhow::anyhow!("{}", problems.join("; "))
        }
        other => anyhow::anyhow!("{other}"),
    }
}
