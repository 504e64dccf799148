#!/bin/bash
# LocalStack READY hook (Docker only): mounted at /etc/localstack/init/ready.d/ by docker-compose.yml.
# Must stay executable (git keeps the mode bit). awslocal ships in the LocalStack image.
set -euo pipefail
BUCKET="${S3STORE_DEV_BUCKET:-s3store-dev}"
if awslocal s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
    echo "create-bucket: s3://$BUCKET already exists"
else
    awslocal s3 mb "s3://$BUCKET"
fi
