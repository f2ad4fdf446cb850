variable "name" {
  description = "Project name: the documents are `<name>-rolling-restart` and `<name>-restore-drill`."
  type        = string
}

variable "release_bucket_name" {
  description = "Release bucket of this region: the only place the rolling restart downloads binaries from."
  type        = string
}

variable "admin_port" {
  description = "dob-api's admin port (DOB_ADMIN_LISTEN), where the rolling restart waits for /readyz."
  type        = number
  default     = 8090
}

variable "tags" {
  description = "Tags for the documents."
  type        = map(string)
  default     = {}
}
