//! The SQL half of the one list engine every API's listings use (servers, images, networks):
//! a [`Listing`] of one [`Table`] — conditions, tag filters, an order made total by the
//! table's id, and keyset paging after a marker — built as one statement. Nothing loads more
//! rows than the page it returns. The HTTP half (query parameters, next links) is
//! `api_toolkit::listing`.
//!
//! Conditions are SQL fragments with `?` for their arguments; the builder numbers them.

use crate::{on_pool, Db, DbError, DbResult};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};
use uuid::Uuid;

/// A value bound to a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i64),
    Bool(bool),
    Uuid(Uuid),
}

/// The type of a sort column's values (to read a marker's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
    Uuid,
}

/// Something a listing can be ordered by: an SQL expression over the table's row. Nullable
/// columns are given as `COALESCE(col, …)` so that both backends order and compare them alike
/// (PostgreSQL and SQLite put NULLs at opposite ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub expr: &'static str,
    pub kind: Kind,
}

/// The creation time (ms), which most tables have and most lists are ordered by.
pub const CREATED_AT: Column = Column {
    expr: "created_at",
    kind: Kind::Int,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Asc,
    Desc,
}

/// Where a row's tags are.
#[derive(Clone, Copy, Debug)]
pub enum Tags {
    /// A table of `(key, tag)` rows whose key is the listed table's id.
    Table {
        table: &'static str,
        key: &'static str,
    },
    /// A JSON array of strings in a column of the row.
    JsonColumn(&'static str),
}

/// A table that can be listed.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    pub name: &'static str,
    /// The column list a page selects.
    pub columns: &'static str,
    /// The id: the last key of every order, which makes it total.
    pub id: Column,
    pub tags: Option<Tags>,
}

/// One condition of a listing: an SQL fragment with a `?` for each argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    sql: String,
    args: Vec<Arg>,
    /// A regular-expression match, whose operator depends on the backend.
    regex: bool,
}

impl Cond {
    pub fn sql(sql: impl Into<String>, args: Vec<Arg>) -> Self {
        Self {
            sql: sql.into(),
            args,
            regex: false,
        }
    }

    pub fn eq(expr: &str, arg: Arg) -> Self {
        Self::sql(format!("{expr} = ?"), vec![arg])
    }

    /// `expr` is one of `args`; none is a condition nothing meets.
    pub fn any_of(expr: &str, args: Vec<Arg>) -> Self {
        if args.is_empty() {
            return Self::never();
        }
        let marks = vec!["?"; args.len()].join(", ");
        Self::sql(format!("{expr} IN ({marks})"), args)
    }

    pub fn at_least(expr: &str, arg: Arg) -> Self {
        Self::sql(format!("{expr} >= ?"), vec![arg])
    }

    pub fn at_most(expr: &str, arg: Arg) -> Self {
        Self::sql(format!("{expr} <= ?"), vec![arg])
    }

    /// `expr` matches the regular expression somewhere (PostgreSQL's `~`, SQLite's `REGEXP`
    /// with the regex crate's syntax).
    pub fn matches(expr: &str, pattern: &str) -> Self {
        Self {
            sql: expr.to_owned(),
            args: vec![Arg::Text(pattern.to_owned())],
            regex: true,
        }
    }

    /// Some object of the JSON array in `column` has the integer `int_field` equal to `value`
    /// and a text `text_field` that the regular expression matches from its start (Python's
    /// `re.match`, as Nova's `ip`/`ip6` filters match each fixed address).
    pub fn element_matches(
        column: &str,
        int_field: &str,
        value: i64,
        text_field: &str,
        pattern: &str,
    ) -> Self {
        Self::sql(
            format!(
                "EXISTS (SELECT 1 FROM \u{1}ELEMENTS\u{1}{column}\u{1} \
                 WHERE CAST(\u{1}FIELD\u{1}{int_field}\u{1} AS INTEGER) = ? \
                 AND \u{1}FIELD\u{1}{text_field}\u{1} \u{1}REGEX\u{1} ?)"
            ),
            vec![Arg::Int(value), Arg::Text(anchored(pattern))],
        )
    }

    /// The JSON object in `column` has `key` with the text `value` (the key is an argument,
    /// never part of the statement).
    pub fn object_field_eq(column: &str, key: &str, value: &str) -> Self {
        Self::sql(
            format!("\u{1}OBJFIELD\u{1}{column}\u{1} = ?"),
            vec![Arg::Text(key.to_owned()), Arg::Text(value.to_owned())],
        )
    }

    /// A condition no row meets (a filter on a value the service never has).
    pub fn never() -> Self {
        Self::sql("1 = 0", Vec::new())
    }

    /// All of `conds` (an empty list: every row).
    pub fn all(conds: Vec<Cond>) -> Self {
        if conds.is_empty() {
            return Self::sql("1 = 1", Vec::new());
        }
        let mut sql = Vec::new();
        let mut args = Vec::new();
        for c in conds {
            let (s, a) = c.resolved_later();
            sql.push(format!("({s})"));
            args.extend(a);
        }
        Self::sql(sql.join(" AND "), args)
    }

    /// Any of `conds` (an empty list: no row).
    pub fn any(conds: Vec<Cond>) -> Self {
        if conds.is_empty() {
            return Self::never();
        }
        let mut sql = Vec::new();
        let mut args = Vec::new();
        for c in conds {
            let (s, a) = c.resolved_later();
            sql.push(format!("({s})"));
            args.extend(a);
        }
        Self::sql(sql.join(" OR "), args)
    }

    /// The fragment, a regular-expression match left as a marker for [`Sql::push_cond`].
    fn resolved_later(self) -> (String, Vec<Arg>) {
        if self.regex {
            (format!("{} \u{1}REGEX\u{1} ?", self.sql), self.args)
        } else {
            (self.sql, self.args)
        }
    }
}

/// `pattern` matched from the start only, as [`Cond::element_matches`] sends it (validate this
/// form, not the bare pattern: a comment in `(?x)` mode would swallow the closing parenthesis).
pub fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})")
}

/// Nova's and Neutron's four tag filters (all given as lists; empty means absent): the row has
/// every tag of `all`, one of `any`, not every one of `not_all`, none of `not_any`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TagFilter {
    pub all: Vec<String>,
    pub any: Vec<String>,
    pub not_all: Vec<String>,
    pub not_any: Vec<String>,
}

impl TagFilter {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
            && self.any.is_empty()
            && self.not_all.is_empty()
            && self.not_any.is_empty()
    }
}

/// A page to list.
#[derive(Clone, Debug)]
pub struct Listing<'a> {
    pub table: &'a Table,
    pub conds: Vec<Cond>,
    pub tags: TagFilter,
    /// The order asked for; the table's id is appended when absent, in the first key's
    /// direction (ascending when there is none).
    pub order: Vec<(Column, Dir)>,
    /// The values of [`Listing::total_order`]'s columns for the row the page starts after
    /// ([`marker`]).
    pub after: Option<Vec<Arg>>,
    /// `None`: every row.
    pub limit: Option<i64>,
}

impl Listing<'_> {
    /// The order as asked, then the id: total, which keyset paging needs.
    pub fn total_order(&self) -> Vec<(Column, Dir)> {
        let mut order = self.order.clone();
        if !order.iter().any(|(c, _)| *c == self.table.id) {
            let dir = order.first().map_or(Dir::Asc, |(_, d)| *d);
            order.push((self.table.id, dir));
        }
        order
    }
}

/// An SQL statement under construction, for one backend.
struct Sql {
    text: String,
    args: Vec<Arg>,
    pg: bool,
    /// A fragment had more or fewer `?`s than arguments (a bug in its maker).
    mismatch: bool,
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Appends a fragment, numbering its `?`s.
    fn push_fragment(&mut self, fragment: &str, args: Vec<Arg>) {
        let regex = if self.pg { "~" } else { "REGEXP" };
        let fragment = self.json_markers(&fragment.replace("\u{1}REGEX\u{1}", regex));
        let mut args = args.into_iter();
        for (i, part) in fragment.split('?').enumerate() {
            if i > 0 {
                match args.next() {
                    Some(arg) => self.args.push(arg),
                    None => self.mismatch = true,
                }
                self.text.push_str(&format!("${}", self.args.len()));
            }
            self.text.push_str(part);
        }
        if args.next().is_some() {
            self.mismatch = true;
        }
    }

    /// The backend's spelling of [`Cond::element_matches`]'s markers: the elements of a JSON
    /// array column as rows (`\u{1}ELEMENTS\u{1}column\u{1}`) and a field of the current
    /// element as text (`\u{1}FIELD\u{1}name\u{1}`).
    fn json_markers(&self, fragment: &str) -> String {
        let mut out = String::new();
        let mut rest = fragment;
        while let Some(at) = rest.find('\u{1}') {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 1..];
            let parsed = tail.split_once('\u{1}').and_then(|(kind, after)| {
                let (name, after) = after.split_once('\u{1}')?;
                let spelled = match (kind, self.pg) {
                    ("ELEMENTS", true) => {
                        format!("jsonb_array_elements(CAST({name} AS jsonb)) AS elements(e)")
                    }
                    ("ELEMENTS", false) => format!("json_each({name}) AS elements"),
                    ("FIELD", true) => format!("(elements.e ->> '{name}')"),
                    ("FIELD", false) => format!("json_extract(elements.value, '$.{name}')"),
                    // The key is the next `?`.
                    ("OBJFIELD", true) => {
                        format!("jsonb_extract_path_text(CAST({name} AS jsonb), ?)")
                    }
                    ("OBJFIELD", false) => format!("json_extract({name}, '$.' || json_quote(?))"),
                    _ => return None,
                };
                Some((spelled, after))
            });
            match parsed {
                Some((spelled, after)) => {
                    out.push_str(&spelled);
                    rest = after;
                }
                None => {
                    out.push('\u{1}');
                    rest = tail;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// `column` as the statement orders and compares it: text byte by byte on both backends
    /// (SQLite's default; PostgreSQL's "C" collation), so that a listing's order does not
    /// depend on the database's locale.
    fn ordered(&self, column: &Column) -> String {
        if self.pg && column.kind == Kind::Text {
            format!("({}) COLLATE \"C\"", column.expr)
        } else {
            column.expr.to_owned()
        }
    }

    fn finish(self) -> DbResult<Sql> {
        if self.mismatch {
            return Err(DbError::Corrupt(format!(
                "listing statement with arguments that do not fit it: {}",
                self.text
            )));
        }
        Ok(self)
    }

    fn push_cond(&mut self, cond: Cond) {
        let (sql, args) = cond.resolved_later();
        self.push(" AND (");
        self.push_fragment(&sql, args);
        self.push(")");
    }

    /// `(SELECT tag …)` of the current row of `table`.
    fn tag_set(&self, table: &Table, tags: Tags) -> String {
        match tags {
            Tags::Table { table: t, key } => {
                format!(
                    "SELECT tag FROM {t} WHERE {t}.{key} = {}.{}",
                    table.name, table.id.expr
                )
            }
            Tags::JsonColumn(column) if self.pg => format!(
                "SELECT tag FROM json_array_elements_text({}.{column}::json) AS t(tag)",
                table.name
            ),
            Tags::JsonColumn(column) => {
                format!(
                    "SELECT value AS tag FROM json_each({}.{column})",
                    table.name
                )
            }
        }
    }

    fn push_tags(&mut self, table: &Table, filter: &TagFilter) {
        let Some(tags) = table.tags else {
            if !filter.is_empty() {
                self.push(" AND 1 = 0");
            }
            return;
        };
        let set = self.tag_set(table, tags);
        let marks = |n: usize| vec!["?"; n].join(", ");
        let texts = |ts: &[String]| ts.iter().cloned().map(Arg::Text).collect::<Vec<_>>();
        let distinct = |list: &[String]| {
            let mut v = list.to_vec();
            v.sort();
            v.dedup();
            v
        };
        let has_all = |n: usize| {
            format!(
                "(SELECT COUNT(DISTINCT tag) FROM ({set}) AS s WHERE tag IN ({})) = {n}",
                marks(n)
            )
        };
        let has_any = |n: usize| {
            format!(
                "EXISTS (SELECT 1 FROM ({set}) AS s WHERE tag IN ({}))",
                marks(n)
            )
        };
        let all = distinct(&filter.all);
        if !all.is_empty() {
            let sql = format!(" AND {}", has_all(all.len()));
            self.push_fragment(&sql, texts(&all));
        }
        if !filter.any.is_empty() {
            let sql = format!(" AND {}", has_any(filter.any.len()));
            self.push_fragment(&sql, texts(&filter.any));
        }
        let not_all = distinct(&filter.not_all);
        if !not_all.is_empty() {
            let sql = format!(" AND NOT {}", has_all(not_all.len()));
            self.push_fragment(&sql, texts(&not_all));
        }
        if !filter.not_any.is_empty() {
            let sql = format!(" AND NOT {}", has_any(filter.not_any.len()));
            self.push_fragment(&sql, texts(&filter.not_any));
        }
    }
}

/// The statement of a page: `SELECT … WHERE conds AND tags AND after ORDER BY … LIMIT …`.
fn page_sql(listing: &Listing<'_>, pg: bool) -> DbResult<Sql> {
    let table = listing.table;
    let mut sql = Sql {
        text: format!("SELECT {} FROM {} WHERE 1 = 1", table.columns, table.name),
        args: Vec::new(),
        pg,
        mismatch: false,
    };
    for cond in &listing.conds {
        sql.push_cond(cond.clone());
    }
    sql.push_tags(table, &listing.tags);
    let order = listing.total_order();
    if let Some(after) = &listing.after {
        // (k1 > v1) OR (k1 = v1 AND k2 > v2) OR …, with < for descending keys.
        let mut alternatives = Vec::new();
        let mut args = Vec::new();
        if after.len() != order.len() {
            sql.mismatch = true;
        }
        for (n, (column, dir)) in order.iter().enumerate() {
            let mut terms: Vec<String> = Vec::new();
            for (i, (c, _)) in order[..n].iter().enumerate() {
                terms.push(format!("{} = ?", sql.ordered(c)));
                args.extend(after.get(i).cloned());
            }
            let op = if *dir == Dir::Asc { ">" } else { "<" };
            terms.push(format!("{} {op} ?", sql.ordered(column)));
            args.extend(after.get(n).cloned());
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        sql.push(" AND (");
        sql.push_fragment(&alternatives.join(" OR "), args);
        sql.push(")");
    }
    let order_by: Vec<String> = order
        .iter()
        .map(|(c, d)| {
            let dir = if *d == Dir::Asc { "ASC" } else { "DESC" };
            format!("{} {dir}", sql.ordered(c))
        })
        .collect();
    sql.push(&format!(" ORDER BY {}", order_by.join(", ")));
    if let Some(limit) = listing.limit {
        sql.push_fragment(" LIMIT ?", vec![Arg::Int(limit)]);
    }
    sql.finish()
}

/// Binds `args` to a query of either backend.
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                Arg::Text(t) => q.bind(t.as_str()),
                Arg::Int(i) => q.bind(*i),
                Arg::Bool(b) => q.bind(*b),
                Arg::Uuid(u) => q.bind(*u),
            };
        }
        q
    }};
}

/// The rows of a page, in order.
/// A row type a listing reads: one that either backend's rows make.
pub trait ListedRow:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> ListedRow for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

pub async fn page<R: ListedRow>(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<R>> {
    let sql = page_sql(listing, matches!(db, Db::Pg(_)))?;
    let has_pattern = listing
        .conds
        .iter()
        .any(|c| c.sql.contains('\u{1}') || c.regex);
    let rows: Vec<R> = on_pool!(db, p => {
        bind_all!(sqlx::query_as::<_, R>(&sql.text), &sql.args)
            .fetch_all(p)
            .await
            .map_err(|e| refused_input(e, has_pattern))?
    });
    Ok(rows)
}

/// What the database refuses of a listing's input is the caller's error, not the service's:
/// a regular expression it cannot use (PostgreSQL's invalid_regular_expression; SQLite's
/// REGEXP function failing, SQLITE_CONSTRAINT_FUNCTION), or a value it cannot hold
/// (PostgreSQL's character_not_in_repertoire: a NUL).
fn refused_input(e: sqlx::Error, has_pattern: bool) -> DbError {
    let code = match &e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match code.as_deref() {
        Some("2201B") => DbError::BadPattern(e.to_string()),
        Some("1811") if has_pattern => DbError::BadPattern(e.to_string()),
        Some("22021") => DbError::BadInput(e.to_string()),
        _ => DbError::Sqlx(e),
    }
}

/// The values of `order`'s columns for the row of `table` whose id is `id` and which meets
/// `conds` (the rows a caller may page from): where a page after it starts. `None` when there
/// is no such row.
pub async fn marker(
    db: &Db,
    table: &Table,
    id: Arg,
    conds: Vec<Cond>,
    order: &[(Column, Dir)],
) -> DbResult<Option<Vec<Arg>>> {
    let exprs: Vec<&str> = order.iter().map(|(c, _)| c.expr).collect();
    let mut sql = Sql {
        text: format!(
            "SELECT {} FROM {} WHERE 1 = 1",
            exprs.join(", "),
            table.name
        ),
        args: Vec::new(),
        pg: matches!(db, Db::Pg(_)),
        mismatch: false,
    };
    sql.push_cond(Cond::eq(table.id.expr, id));
    for cond in conds {
        sql.push_cond(cond);
    }
    let sql = sql.finish()?;
    macro_rules! read {
        ($row:expr) => {{
            let row = $row;
            let mut values = Vec::with_capacity(order.len());
            for (i, (c, _)) in order.iter().enumerate() {
                values.push(match c.kind {
                    Kind::Text => Arg::Text(row.try_get::<String, _>(i)?),
                    Kind::Int => Arg::Int(row.try_get::<i64, _>(i)?),
                    Kind::Bool => Arg::Bool(row.try_get::<bool, _>(i)?),
                    Kind::Uuid => Arg::Uuid(row.try_get::<Uuid, _>(i)?),
                });
            }
            values
        }};
    }
    let values = on_pool!(db, p => {
        match bind_all!(sqlx::query(&sql.text), &sql.args)
            .fetch_optional(p)
            .await
            .map_err(|e| refused_input(e, false))?
        {
            Some(row) => Some(read!(row)),
            None => None,
        }
    });
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table {
        name: "things",
        columns: "id, name",
        id: Column {
            expr: "id",
            kind: Kind::Text,
        },
        tags: Some(Tags::Table {
            table: "thing_tags",
            key: "thing_id",
        }),
    };
    const NAME: Column = Column {
        expr: "name",
        kind: Kind::Text,
    };

    #[test]
    fn a_page_after_a_marker_is_one_statement_with_numbered_arguments() {
        let listing = Listing {
            table: &T,
            conds: vec![
                Cond::eq("owner", Arg::Text("p".into())),
                Cond::any(vec![Cond::matches("name", "^a"), Cond::never()]),
            ],
            tags: TagFilter {
                any: vec!["x".into(), "y".into()],
                ..Default::default()
            },
            order: vec![(NAME, Dir::Desc)],
            after: Some(vec![Arg::Text("n".into()), Arg::Text("i".into())]),
            limit: Some(10),
        };
        let pg = page_sql(&listing, true).expect("a statement");
        assert_eq!(
            pg.text,
            "SELECT id, name FROM things WHERE 1 = 1 AND (owner = $1) AND ((name ~ $2) OR (1 = 0)) \
             AND EXISTS (SELECT 1 FROM (SELECT tag FROM thing_tags WHERE thing_tags.thing_id = \
             things.id) AS s WHERE tag IN ($3, $4)) AND (((name) COLLATE \"C\" < $5) OR \
             ((name) COLLATE \"C\" = $6 AND (id) COLLATE \"C\" < $7)) \
             ORDER BY (name) COLLATE \"C\" DESC, (id) COLLATE \"C\" DESC LIMIT $8"
        );
        assert_eq!(pg.args.len(), 8);
        let sqlite = page_sql(&listing, false).expect("a statement");
        assert!(sqlite.text.contains("name REGEXP $2"));
        assert!(sqlite
            .text
            .ends_with("ORDER BY name DESC, id DESC LIMIT $8"));
        let short = Listing {
            after: Some(vec![Arg::Text("n".into())]),
            ..listing
        };
        assert!(
            page_sql(&short, true).is_err(),
            "a marker without every key's value"
        );
    }
}
