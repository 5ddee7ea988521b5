"""Image cache: container image -> SIF builds cached in S3 or a directory."""
