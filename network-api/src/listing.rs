//! Neutron's list queries, for every collection here: filters (repeated: any of the values),
//! `fields`, tag filters, one sort key and direction, and paging by `limit` and `marker` with a
//! next link when there are more. One statement per page ([`nova_db::listing`]).

use actix_web::HttpRequest;
use api_toolkit::links::next_page;
use api_toolkit::listing::{NextLink, Query};
use api_toolkit::{bad, ApiError, ApiResult};
use nova_db::listing::{self, Arg, Column, Cond, Dir, Kind, ListedRow, Listing, Table, TagFilter};
use nova_db::Db;
use serde_json::{json, Map, Value};
/// Query parameters that are not filters.
const PAGING: &[&str] = &[
    "fields",
    "limit",
    "marker",
    "page_reverse",
    "sort_key",
    "sort_dir",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
];

/// What a collection can be listed by.
pub(crate) struct Collection {
    /// Its name in paths and bodies (`subnets`).
    pub name: &'static str,
    pub table: &'static Table,
    /// Attributes it may be filtered by (Neutron refuses the others).
    pub filters: &'static [&'static str],
    /// Filters whose values must be booleans.
    pub booleans: &'static [&'static str],
    /// Sort keys, each with its column.
    pub sort_keys: &'static [(&'static str, Column)],
}

pub(crate) use nova_db::listing::CREATED_AT;

/// A list request, parsed.
pub(crate) struct Asked {
    /// Each filter with the values it may have, in the order first given.
    pub filters: Vec<(String, Vec<String>)>,
    pub fields: Vec<String>,
    limit: Option<i64>,
    marker: Option<String>,
    sort: Option<Column>,
    dir: Dir,
    tags: TagFilter,
}

/// A filter's value as a boolean, as Neutron converts them (`true`/`false` in any case, 1/0).
pub(crate) fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// The query of a list request, checked as Neutron checks it.
pub(crate) fn parse(req: &HttpRequest, c: &Collection) -> ApiResult<Asked> {
    let q = Query::of(req);
    let mut asked = Asked {
        filters: Vec::new(),
        fields: Vec::new(),
        limit: None,
        marker: None,
        sort: None,
        dir: Dir::Asc,
        tags: q.tag_filter_merged(),
    };
    let mut sort_dirs = 0;
    for (k, v) in q.pairs() {
        if c.booleans.contains(&k) && boolean(v).is_none() {
            return Err(bad(format!(
                "Invalid input for operation: '{v}' cannot be converted to boolean."
            )));
        }
        match k {
            // Neutron drops empty values.
            "fields" if v.is_empty() => {}
            "fields" => asked.fields.push(v.to_owned()),
            "limit" => {
                let limit = v.parse::<u64>().map_err(|_| {
                    bad(format!(
                        "Bad limit request: Limit must be an integer 0 or greater and not '{v}'."
                    ))
                })?;
                // As Neutron: a limit of 0 is none.
                asked.limit = Some(limit)
                    .filter(|l| *l > 0)
                    .map(|l| i64::try_from(l).unwrap_or(i64::MAX));
            }
            "marker" => asked.marker = Some(v.to_owned()),
            "sort_key" => match c.sort_keys.iter().find(|(key, _)| *key == v) {
                Some((_, column)) => asked.sort = Some(*column),
                None => return Err(bad(format!("['{v}'] is invalid attribute for sort_keys"))),
            },
            "sort_dir" => match v {
                "asc" | "desc" => {
                    asked.dir = if v == "desc" { Dir::Desc } else { Dir::Asc };
                    sort_dirs += 1;
                }
                _ => {
                    return Err(bad(format!(
                        "{v} is invalid value for sort_dirs, valid value is 'asc' and 'desc'"
                    )))
                }
            },
            key if PAGING.contains(&key) => {}
            key if c.filters.contains(&key) => {
                match asked.filters.iter_mut().find(|(f, _)| f == k) {
                    Some((_, values)) => values.push(v.to_owned()),
                    None => asked.filters.push((k.to_owned(), vec![v.to_owned()])),
                }
            }
            key => return Err(bad(format!("['{key}'] is invalid attribute for filtering"))),
        }
    }
    if sort_dirs != usize::from(asked.sort.is_some()) {
        return Err(bad("The number of sort_keys and sort_dirs must be same"));
    }
    Ok(asked)
}

/// A page of the rows `visible` lets the caller see that meet `conds`, in the order asked
/// (then by creation), and the next page's link when there are more. A marker that is not a
/// visible row is `missing(marker)`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch<R: ListedRow>(
    db: &Db,
    req: &HttpRequest,
    c: &Collection,
    asked: &Asked,
    visible: Cond,
    conds: Vec<Cond>,
    id_of: fn(&R) -> &str,
    missing: fn(&str) -> ApiError,
) -> ApiResult<(Vec<R>, Option<String>)> {
    let mut all = vec![visible.clone()];
    all.extend(conds);
    let mut order = Vec::new();
    if let Some(column) = asked.sort {
        order.push((column, asked.dir));
    }
    if !order.iter().any(|(col, _)| *col == CREATED_AT) {
        order.push((CREATED_AT, asked.dir));
    }
    let rule = NextLink::WhenMore;
    let mut listing = Listing {
        table: c.table,
        conds: all,
        tags: asked.tags.clone(),
        order,
        after: None,
        limit: asked.limit.map(|l| rule.ask(l)),
    };
    // A marker only means something with a limit (as Neutron).
    if let Some(marker) = asked.marker.as_ref().filter(|_| asked.limit.is_some()) {
        let order = listing.total_order();
        listing.after = Some(
            listing::marker(
                db,
                c.table,
                Arg::Text(marker.clone()),
                vec![visible],
                &order,
            )
            .await?
            .ok_or_else(|| missing(marker))?,
        );
    }
    let rows: Vec<R> = listing::page(db, &listing).await?;
    let Some(limit) = asked.limit else {
        return Ok((rows, None));
    };
    let page = rule.page(rows, limit);
    let next = page.rows.last().filter(|_| page.next).map(|last| {
        next_page(
            req,
            &format!("/network/v2.0/{}", c.name),
            &["marker", "page_reverse"],
            &[("marker", id_of(last))],
        )
    });
    Ok((page.rows, next))
}

/// Only the `fields` asked for, when any were (Neutron's field selection).
pub(crate) fn select(mut view: Map<String, Value>, fields: &[String]) -> Value {
    if !fields.is_empty() {
        view.retain(|k, _| fields.iter().any(|f| f == k));
    }
    Value::Object(view)
}

/// The body of a list: the views, and the next link when there is one.
pub(crate) fn body(c: &Collection, views: Vec<Value>, next: Option<String>) -> Value {
    let mut body = json!({ c.name: views });
    if let Some(href) = next {
        body[format!("{}_links", c.name)] = json!([{"rel": "next", "href": href}]);
    }
    body
}

/// The `fields` of a show request.
pub(crate) fn fields_of(req: &HttpRequest) -> Vec<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, v)| k == "fields" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// A text filter: the column is one of the values.
pub(crate) fn texts(column: &str, wanted: &[String]) -> Cond {
    Cond::any_of(column, wanted.iter().cloned().map(Arg::Text).collect())
}

/// A boolean filter: the column is one of the values (already checked to be booleans).
pub(crate) fn booleans(column: &str, wanted: &[String]) -> Cond {
    Cond::any_of(
        column,
        wanted
            .iter()
            .filter_map(|w| boolean(w))
            .map(Arg::Bool)
            .collect(),
    )
}

/// An integer filter; a value that is not an integer matches nothing.
pub(crate) fn integers(column: &str, wanted: &[String]) -> Cond {
    Cond::any_of(
        column,
        wanted
            .iter()
            .filter_map(|w| w.parse::<i64>().ok())
            .map(Arg::Int)
            .collect(),
    )
}

/// A filter on an attribute that has one value here: every row when the values asked for
/// include it, none otherwise.
pub(crate) fn constant(holds: bool) -> Cond {
    if holds {
        Cond::all(Vec::new())
    } else {
        Cond::never()
    }
}

/// A filter on a boolean attribute that is false on every row here.
pub(crate) fn always_false(wanted: &[String]) -> Cond {
    constant(wanted.iter().any(|w| boolean(w) == Some(false)))
}

/// A text column to sort by.
pub(crate) const fn text_column(expr: &'static str) -> Column {
    Column {
        expr,
        kind: Kind::Text,
    }
}
