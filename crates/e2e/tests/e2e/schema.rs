//! `crates/store/src/schema.rs` is written by hand (no diesel CLI on the build machines):
//! this test holds it to the migrated database, column by column.

use mailfleet_testkit::{TestDb, strings};
use std::collections::BTreeSet;

const SCHEMA_RS: &str = include_str!("../../../store/src/schema.rs");

fn pg_type(diesel: &str) -> (String, bool) {
    let (inner, nullable) = match diesel
        .strip_prefix("Nullable<")
        .and_then(|s| s.strip_suffix('>'))
    {
        Some(i) => (i, true),
        None => (diesel, false),
    };
    let t = match inner {
        "Int8" => "int8",
        "Int4" => "int4",
        "Text" => "text",
        "Bool" => "bool",
        "Timestamptz" => "timestamptz",
        "Bytea" => "bytea",
        "Jsonb" => "jsonb",
        "Uuid" => "uuid",
        "Array<Text>" => "_text",
        other => panic!("map diesel type {other} in this test"),
    };
    (t.to_string(), nullable)
}

/// (table, column, pg type, nullable) from the `table!` blocks.
fn declared() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut table = None;
    for line in SCHEMA_RS.lines().map(str::trim) {
        if let Some(rest) = line.strip_suffix('{') {
            let name = rest.split_whitespace().next().unwrap_or("");
            if rest.contains('(') {
                table = Some(name.to_string());
            }
            continue;
        }
        if let (Some(t), Some((col, ty))) = (&table, line.split_once(" -> ")) {
            let (pg, nullable) = pg_type(ty.trim_end_matches(','));
            out.insert(format!("{t}.{col} {pg} {nullable}"));
        }
        if line == "}" {
            table = None;
        }
    }
    out
}

#[tokio::test]
async fn the_hand_written_diesel_schema_matches_the_migrations() {
    let db = TestDb::create().await;
    let actual: BTreeSet<String> = strings(
        &db.url,
        "SELECT table_name || '.' || column_name || ' ' || udt_name || ' ' ||
                CASE WHEN is_nullable = 'YES' THEN 'true' ELSE 'false' END AS value
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .await
    .into_iter()
    .collect();
    let declared = declared();
    assert!(
        declared.len() > 50,
        "parsed too little of schema.rs: {declared:?}"
    );
    let missing: Vec<_> = actual.difference(&declared).collect();
    let extra: Vec<_> = declared.difference(&actual).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "in the database but not schema.rs: {missing:#?}\nin schema.rs but not the database: {extra:#?}"
    );
}
