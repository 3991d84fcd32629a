//! The HTTP half of the one list engine: the query string read once ([`Query`]), the tag
//! filters as Nova and Neutron name them, and when a page gets a next link ([`NextLink`]; the
//! link itself is [`crate::links::next_page`]). Each service keeps its own words for bad
//! input; the SQL is `nova_db::listing`'s.

use actix_web::HttpRequest;
use nova_db::listing::TagFilter;

/// A request's query string, parsed once: every pair, in order (keys repeat).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn of(req: &HttpRequest) -> Self {
        Self::parse(req.query_string())
    }

    pub fn parse(query: &str) -> Self {
        Self {
            pairs: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value of `key` (what a repeated single-valued parameter means, as webob's
    /// `GET[key]`).
    pub fn last(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Nova's tag filters (`tags`, `tags-any`, `not-tags`, `not-tags-any`), each a
    /// comma-separated list; of a filter given twice, the last (Nova reads one value).
    pub fn tag_filter(&self) -> TagFilter {
        let list = |key: &str| -> Vec<String> {
            self.last(key)
                .map(|v| v.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        };
        tags_by(list)
    }

    /// Neutron's tag filters: the same four, each one list of every tag given in every
    /// occurrence (Neutron's `_get_tag_list` joins them).
    pub fn tag_filter_merged(&self) -> TagFilter {
        let list = |key: &str| -> Vec<String> {
            self.all(key)
                .into_iter()
                .flat_map(|v| v.split(','))
                .map(str::to_owned)
                .collect()
        };
        tags_by(list)
    }
}

fn tags_by(list: impl Fn(&str) -> Vec<String>) -> TagFilter {
    TagFilter {
        all: list("tags"),
        any: list("tags-any"),
        not_all: list("not-tags"),
        not_any: list("not-tags-any"),
    }
}

/// When a page gets a link to the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextLink {
    /// Whenever the page is full (Nova: the next page may turn out empty).
    WhenFull,
    /// Only when there are more rows (Glance, Neutron): the page is fetched with one more row
    /// than its limit to know.
    WhenMore,
}

/// A page of rows, and whether it gets a next link (whose marker is its last row).
#[derive(Debug)]
pub struct Page<R> {
    pub rows: Vec<R>,
    pub next: bool,
}

impl NextLink {
    /// How many rows to ask the database for, for a page of `limit`.
    pub fn ask(self, limit: i64) -> i64 {
        match self {
            NextLink::WhenFull => limit,
            NextLink::WhenMore => limit.saturating_add(1),
        }
    }

    /// The page of `limit` out of the rows [`NextLink::ask`] asked for.
    pub fn page<R>(self, mut rows: Vec<R>, limit: i64) -> Page<R> {
        let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let next = match self {
            NextLink::WhenFull => limit > 0 && count == limit,
            NextLink::WhenMore => count > limit,
        };
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        Page { rows, next }
    }
}
