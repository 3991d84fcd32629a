//! Glance's schema documents (`/v2/schemas/image`, `/images`, `/member`, `/members`): the
//! JSON schemas of what this image API returns, which python-glanceclient (and Horizon through
//! it) reads before it lists, shows or updates images. An image is a permissive schema: its
//! own properties are these, any other is an extra property, a string.

use crate::images::{CONTAINER_FORMATS, DISK_FORMATS};
use actix_web::HttpResponse;
// Glance serves its schemas to authenticated callers only.
use api_toolkit::RequestContext;
use serde_json::{json, Map, Value};

const UUID_PATTERN: &str =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

fn read_only(kind: Value, description: &str) -> Value {
    json!({"type": kind, "readOnly": true, "description": description})
}

/// A format property: one of `formats`, or null.
fn format_enum(formats: &[&str], description: &str) -> Value {
    let mut values: Vec<Value> = vec![Value::Null];
    values.extend(formats.iter().map(|f| json!(f)));
    json!({"type": ["null", "string"], "description": description, "enum": values})
}

/// The properties of an image, as the image API shows them (`images::view`).
fn image_properties() -> Map<String, Value> {
    let props = json!({
        "id": {"type": "string", "description": "An identifier for the image",
               "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "description": "Descriptive name for the image",
                 "maxLength": 255},
        "status": {"type": "string", "readOnly": true, "description": "Status of the image",
                   "enum": ["queued", "saving", "active", "killed", "deleted", "uploading",
                            "importing", "pending_delete", "deactivated"]},
        "visibility": {"type": "string", "description": "Scope of image accessibility",
                       "enum": ["community", "public", "private", "shared"]},
        "protected": {"type": "boolean",
                      "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean",
                      "description": "If true, image will not appear in default image list response."},
        "checksum": {"type": ["null", "string"], "readOnly": true,
                     "description": "md5 hash of image contents.", "maxLength": 32},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": true,
                         "description": "Algorithm to calculate the os_hash_value",
                         "maxLength": 64},
        "os_hash_value": {"type": ["null", "string"], "readOnly": true,
                          "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
                          "maxLength": 128},
        "owner": {"type": ["null", "string"], "description": "Owner of the image",
                  "maxLength": 255},
        "size": read_only(json!(["null", "integer"]), "Size of image file in bytes"),
        "virtual_size": read_only(json!(["null", "integer"]), "Virtual size of image in bytes"),
        "container_format": format_enum(CONTAINER_FORMATS, "Format of the container"),
        "disk_format": format_enum(DISK_FORMATS, "Format of the disk"),
        "created_at": read_only(json!("string"), "Date and time of image registration"),
        "updated_at": read_only(json!("string"), "Date and time of the last image modification"),
        "tags": {"type": "array", "description": "List of strings related to the image",
                 "items": {"type": "string", "maxLength": 255}},
        "min_ram": {"type": "integer",
                    "description": "Amount of ram (in MB) required to boot image."},
        "min_disk": {"type": "integer",
                     "description": "Amount of disk space (in GB) required to boot image."},
        "self": read_only(json!("string"), "An image self url"),
        "file": read_only(json!("string"), "An image file url"),
        "schema": read_only(json!("string"), "An image schema url"),
    });
    match props {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `/v2/schemas/image`.
pub fn image() -> Value {
    json!({
        "name": "image",
        "properties": image_properties(),
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

/// A collection of `item` named `name`, as Glance's collection schemas are.
fn collection(name: &str, item: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

/// `/v2/schemas/member`.
pub fn member() -> Value {
    json!({
        "name": "member",
        "properties": {
            "member_id": {"type": "string",
                          "description": "An identifier for the image member (tenantId)"},
            "image_id": {"type": "string", "description": "An identifier for the image",
                         "pattern": UUID_PATTERN},
            "created_at": {"type": "string",
                           "description": "Date and time of image member creation"},
            "updated_at": {"type": "string",
                           "description": "Date and time of last modification of image member"},
            "status": {"type": "string", "description": "The status of this image member",
                       "enum": ["pending", "accepted", "rejected"]},
            "schema": {"readOnly": true, "type": "string"},
        },
        "additionalProperties": false,
    })
}

pub(crate) async fn image_schema(_caller: RequestContext) -> HttpResponse {
    HttpResponse::Ok().json(image())
}

pub(crate) async fn images_schema(_caller: RequestContext) -> HttpResponse {
    HttpResponse::Ok().json(collection("images", image()))
}

pub(crate) async fn member_schema(_caller: RequestContext) -> HttpResponse {
    HttpResponse::Ok().json(member())
}

pub(crate) async fn members_schema(_caller: RequestContext) -> HttpResponse {
    HttpResponse::Ok().json(collection("members", member()))
}
