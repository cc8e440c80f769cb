//! `image_info` of the `write_image` deploy step (spec §5) and its validation.
//!
//! Ironic copies many values with `dict.get()`, so a key may be absent, null or set; fields
//! that Ironic may send as null are `Option<Option<T>>` (`None` = absent, `Some(None)` =
//! null) so that a message re-serializes exactly.

use serde::{Deserialize, Serialize};

use crate::serde_util::{double_option, redacted};
use crate::JsonObject;

/// Length of a hex MD5 digest; IPA picks the checksum algorithm by length.
const MD5_HEX_LEN: usize = 32;

/// The image to write and how to fetch and check it. `Debug` never shows passwords,
/// authorization headers or config-drive contents.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Last `/` segment of `instance_info.image_source`; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tried in order; required, non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// `raw`, `qcow2`, `gpt`, ... or null (then deep inspection decides).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_format: Option<Option<String>>,
    /// Ignored by IPA.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_format: Option<Option<String>>,
    /// With `disk_format == "raw"`: stream to the device, no temporary file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_raw_images: Option<bool>,
    /// A hex digest (algorithm by length: 32 md5, 64 sha256, 128 sha512) or an
    /// `http(s)://` URL of a checksum file.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub checksum: Option<Option<String>>,
    /// Sent only as a pair with `os_hash_value`; preferred over `checksum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_algo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_value: Option<String>,
    /// `http_basic` or `noauth`; sent only when not `noauth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_server_auth_strategy: Option<String>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_server_user: Option<Option<String>>,
    /// Secret.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_server_password: Option<Option<String>>,
    /// Secret: base64 of the `Authorization` header value to send verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_request_authorization: Option<String>,
    /// `{"http": url, "https": url}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies: Option<JsonObject>,
    /// Exported as `no_proxy`; only sent with `proxies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_uuid: Option<String>,

    // Partition images only (`driver_internal_info.is_whole_disk_image` false). Ironic sends
    // each of these, null when unset.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ramdisk: Option<Option<String>>,
    /// As the user set it in `instance_info` (integer or string); IPA uses `root_mb`.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub root_gb: Option<Option<serde_json::Value>>,
    /// 1024 × `root_gb`; the image's virtual size must fit.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub root_mb: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub swap_mb: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ephemeral_mb: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ephemeral_format: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub preserve_ephemeral: Option<Option<bool>>,
    /// `"partition"` for partition images; whole-disk images get no key at all.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_type: Option<Option<String>>,
    /// `uefi` or `bios`.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deploy_boot_mode: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_option: Option<String>,
    /// `msdos` or `gpt`; sent only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_label: Option<String>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub configdrive: Option<Option<ConfigDrive>>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Why `image_info` was refused. Becomes an `InvalidCommandParamsError` (400) for the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageInfoError {
    #[error("Image is missing '{0}' field.")]
    MissingField(&'static str),
    #[error("Image 'urls' must be a list with at least one element.")]
    NoUrls,
    #[error("Image 'checksum' must be a non-empty string.")]
    EmptyChecksum,
    #[error("Image 'os_hash_algo' must be a non-empty string.")]
    EmptyOsHashAlgo,
    #[error("Image 'os_hash_value' must be a non-empty string.")]
    EmptyOsHashValue,
    #[error(
        "Image 'checksum' is an MD5 digest and MD5 checksums are disabled \
         (agent_md5_checksum_enable); set 'os_hash_algo' and 'os_hash_value' instead."
    )]
    Md5Disabled,
    #[error(
        "Image checksum is not available, either the 'checksum' field or the \
         'os_hash_algo' and 'os_hash_value' fields pair must be set for image verification."
    )]
    NoChecksum,
}

impl ImageInfo {
    /// IPA's `_validate_image_info`: `id` present, `urls` a non-empty list, and at least one
    /// usable checksum: a `checksum` that is a URL, not MD5-length, or MD5 with `md5_enabled`;
    /// or an `os_hash_algo`/`os_hash_value` pair.
    pub fn validate(&self, md5_enabled: bool) -> Result<(), ImageInfoError> {
        if self.id.is_none() {
            return Err(ImageInfoError::MissingField("id"));
        }
        match &self.urls {
            None => return Err(ImageInfoError::MissingField("urls")),
            Some(urls) if urls.is_empty() => return Err(ImageInfoError::NoUrls),
            Some(_) => {}
        }

        let mut usable = false;
        let mut refused_md5 = false;
        if let Some(checksum) = self.checksum() {
            if checksum.is_empty() {
                return Err(ImageInfoError::EmptyChecksum);
            }
            if md5_enabled || is_url(checksum) || checksum.len() != MD5_HEX_LEN {
                usable = true;
            } else {
                refused_md5 = true;
            }
        }

        let algo = self.os_hash_algo.as_deref().unwrap_or_default();
        let value = self.os_hash_value.as_deref().unwrap_or_default();
        if !algo.is_empty() || !value.is_empty() {
            if algo.is_empty() {
                return Err(ImageInfoError::EmptyOsHashAlgo);
            }
            if value.is_empty() {
                return Err(ImageInfoError::EmptyOsHashValue);
            }
            usable = true;
        }

        match (usable, refused_md5) {
            (true, _) => Ok(()),
            (false, true) => Err(ImageInfoError::Md5Disabled),
            (false, false) => Err(ImageInfoError::NoChecksum),
        }
    }

    /// `disk_format` when set (absent and null both give `None`).
    pub fn disk_format(&self) -> Option<&str> {
        self.disk_format.as_ref()?.as_deref()
    }

    /// `checksum` when set (absent and null both give `None`).
    pub fn checksum(&self) -> Option<&str> {
        self.checksum.as_ref()?.as_deref()
    }

    /// IPA treats the image as a partition image only when `image_type == "partition"`.
    pub fn is_partition_image(&self) -> bool {
        self.image_type.as_ref().and_then(Option::as_deref) == Some("partition")
    }
}

fn is_url(checksum: &str) -> bool {
    checksum.starts_with("http://") || checksum.starts_with("https://")
}

impl std::fmt::Debug for ImageInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let ImageInfo {
            id,
            urls,
            disk_format,
            container_format,
            stream_raw_images,
            checksum,
            os_hash_algo,
            os_hash_value,
            image_server_auth_strategy,
            image_server_user,
            image_server_password,
            image_request_authorization,
            proxies,
            no_proxy,
            node_uuid,
            kernel,
            ramdisk,
            root_gb,
            root_mb,
            swap_mb,
            ephemeral_mb,
            ephemeral_format,
            preserve_ephemeral,
            image_type,
            deploy_boot_mode,
            boot_option,
            disk_label,
            configdrive,
            extra,
        } = self;
        f.debug_struct("ImageInfo")
            .field("id", id)
            .field("urls", urls)
            .field("disk_format", disk_format)
            .field("container_format", container_format)
            .field("stream_raw_images", stream_raw_images)
            .field("checksum", checksum)
            .field("os_hash_algo", os_hash_algo)
            .field("os_hash_value", os_hash_value)
            .field("image_server_auth_strategy", image_server_auth_strategy)
            .field("image_server_user", image_server_user)
            .field(
                "image_server_password",
                &format_args!("{}", redacted(image_server_password)),
            )
            .field(
                "image_request_authorization",
                &format_args!("{}", redacted(image_request_authorization)),
            )
            .field("proxies", proxies)
            .field("no_proxy", no_proxy)
            .field("node_uuid", node_uuid)
            .field("kernel", kernel)
            .field("ramdisk", ramdisk)
            .field("root_gb", root_gb)
            .field("root_mb", root_mb)
            .field("swap_mb", swap_mb)
            .field("ephemeral_mb", ephemeral_mb)
            .field("ephemeral_format", ephemeral_format)
            .field("preserve_ephemeral", preserve_ephemeral)
            .field("image_type", image_type)
            .field("deploy_boot_mode", deploy_boot_mode)
            .field("boot_option", boot_option)
            .field("disk_label", disk_label)
            .field("configdrive", configdrive)
            // Unknown keys may hold secrets too: show their names only.
            .field("extra", &extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `args` of the `write_image` deploy step: `{"image_info": {...}, "configdrive": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteImageArgs {
    pub image_info: ImageInfo,
    /// Ironic always sends the key (null without a config drive). `Debug` shows its length.
    #[serde(default)]
    pub configdrive: Option<ConfigDrive>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// A config drive as Ironic passes it: base64 of a gzipped ISO, or an `http(s)` URL.
/// `Debug` shows its length only (it carries user data).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigDrive(pub String);

impl std::fmt::Debug for ConfigDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigDrive(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "b6d81b360a5672d80c27430f39153e2c";
    const SHA256: &str = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";

    fn image(checksum: Option<Option<&str>>) -> ImageInfo {
        ImageInfo {
            id: Some("disk.raw".to_string()),
            urls: Some(vec!["http://127.0.0.1:8089/disk.raw".to_string()]),
            checksum: checksum.map(|c| c.map(str::to_string)),
            ..ImageInfo::default()
        }
    }

    fn with_os_hash(mut info: ImageInfo, algo: &str, value: &str) -> ImageInfo {
        info.os_hash_algo = Some(algo.to_string());
        info.os_hash_value = Some(value.to_string());
        info
    }

    #[test]
    fn id_and_urls_are_required() {
        let mut info = image(Some(Some(SHA256)));
        info.id = None;
        assert_eq!(info.validate(true), Err(ImageInfoError::MissingField("id")));
        let mut info = image(Some(Some(SHA256)));
        info.urls = None;
        assert_eq!(
            info.validate(true),
            Err(ImageInfoError::MissingField("urls"))
        );
        info.urls = Some(Vec::new());
        assert_eq!(info.validate(true), Err(ImageInfoError::NoUrls));
    }

    #[test]
    fn md5_checksum_counts_only_when_md5_is_enabled() {
        assert_eq!(image(Some(Some(MD5))).validate(true), Ok(()));
        assert_eq!(
            image(Some(Some(MD5))).validate(false),
            Err(ImageInfoError::Md5Disabled)
        );
        // An md5 os_hash pair is the operator's explicit choice and is not refused.
        assert_eq!(
            with_os_hash(image(Some(Some(MD5))), "sha256", SHA256).validate(false),
            Ok(())
        );
    }

    #[test]
    fn sha_and_url_checksums_are_always_usable() {
        assert_eq!(image(Some(Some(SHA256))).validate(false), Ok(()));
        assert_eq!(image(Some(Some(&"a".repeat(128)))).validate(false), Ok(()));
        // A URL of exactly md5 length is still a URL.
        let url = "http://h/checksums.txt/abcdefghi";
        assert_eq!(url.len(), MD5_HEX_LEN);
        assert_eq!(image(Some(Some(url))).validate(false), Ok(()));
    }

    #[test]
    fn a_checksum_source_is_required() {
        assert_eq!(image(None).validate(true), Err(ImageInfoError::NoChecksum));
        assert_eq!(
            image(Some(None)).validate(true),
            Err(ImageInfoError::NoChecksum)
        );
        assert_eq!(
            with_os_hash(image(Some(None)), "sha512", "abc").validate(false),
            Ok(())
        );
    }

    #[test]
    fn empty_values_are_refused() {
        assert_eq!(
            image(Some(Some(""))).validate(true),
            Err(ImageInfoError::EmptyChecksum)
        );
        assert_eq!(
            with_os_hash(image(None), "", "abc").validate(true),
            Err(ImageInfoError::EmptyOsHashAlgo)
        );
        assert_eq!(
            with_os_hash(image(None), "sha256", "").validate(true),
            Err(ImageInfoError::EmptyOsHashValue)
        );
        assert_eq!(
            with_os_hash(image(None), "", "").validate(true),
            Err(ImageInfoError::NoChecksum)
        );
    }

    #[test]
    fn errors_read_as_messages() {
        assert_eq!(
            ImageInfoError::MissingField("id").to_string(),
            "Image is missing 'id' field."
        );
        assert!(ImageInfoError::Md5Disabled
            .to_string()
            .contains("agent_md5_checksum_enable"));
    }

    #[test]
    fn debug_hides_secrets_and_config_drive() {
        let mut info = image(Some(Some(SHA256)));
        info.image_server_user = Some(Some("deployer".to_string()));
        info.image_server_password = Some(Some("hunter2-password".to_string()));
        info.image_request_authorization = Some("QmVhcmVyIHNlY3JldC10b2tlbg==".to_string());
        info.configdrive = Some(Some(ConfigDrive("H4sIAAAAconfigdrivebody".to_string())));
        info.extra.insert(
            "future_secret".to_string(),
            serde_json::Value::String("do-not-print".to_string()),
        );
        let args = WriteImageArgs {
            image_info: info.clone(),
            configdrive: Some(ConfigDrive("H4sIAAAAconfigdrivebody".to_string())),
            extra: JsonObject::new(),
        };
        for debug in [format!("{info:?}"), format!("{args:?}")] {
            for secret in ["hunter2", "QmVhcmVy", "configdrivebody", "do-not-print"] {
                assert!(!debug.contains(secret), "{secret} in {debug}");
            }
            assert!(debug.contains("<redacted>"), "{debug}");
            assert!(debug.contains("deployer"), "{debug}");
            assert!(debug.contains("future_secret"), "{debug}");
        }
    }

    #[test]
    fn null_and_absent_are_kept_apart() -> Result<(), serde_json::Error> {
        let wire = serde_json::json!({
            "id": "disk.raw",
            "urls": ["http://h/disk.raw"],
            "disk_format": "raw",
            "container_format": null,
            "checksum": MD5,
            "kernel": null,
            "root_mb": 10240,
            "image_type": "partition",
        });
        let info: ImageInfo = serde_json::from_value(wire.clone())?;
        assert_eq!(info.container_format, Some(None));
        assert_eq!(info.ramdisk, None);
        assert_eq!(info.disk_format(), Some("raw"));
        assert_eq!(info.root_mb, Some(Some(10240)));
        assert!(info.is_partition_image());
        assert_eq!(serde_json::to_value(&info)?, wire);
        Ok(())
    }
}
