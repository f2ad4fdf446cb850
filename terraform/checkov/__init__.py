"""dob's custom checkov checks (loaded with `checkov --external-checks-dir terraform/checkov`)."""
