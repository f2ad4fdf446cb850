variable "name" {
  description = "Name prefix: the topic is <name>-alarms, its key alias/<name>-alarms."
  type        = string
}

variable "email_endpoints" {
  description = "Email addresses subscribed to the topic (each confirms by the link AWS mails it; until then it receives nothing)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for the topic and its key."
  type        = map(string)
  default     = {}
}
