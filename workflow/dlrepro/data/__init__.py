"""The data stage: a registry of public data sets, a verifying downloader that accepts a
local mirror, and preparation of text corpora and image sets into compact arrays."""
