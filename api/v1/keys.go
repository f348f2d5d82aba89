package v1

import "time"

// AccessKeySpec is the body of POST /v1/keys.
type AccessKeySpec struct {
	Description string `json:"description,omitempty"`
}

// AccessKey is an access key of the Lambda API (AWS Signature Version 4)
// as the API shows it. SecretAccessKey is set only in the answer of POST
// /v1/keys (201): the secret is never shown again.
type AccessKey struct {
	AccessKeyID     string     `json:"accessKeyId"`
	SecretAccessKey string     `json:"secretAccessKey,omitempty"`
	Description     string     `json:"description"`
	CreatedAt       time.Time  `json:"createdAt"`
	LastUsedAt      *time.Time `json:"lastUsedAt,omitempty"`
}

// AccessKeyList answers GET /v1/keys, oldest key first.
type AccessKeyList struct {
	Keys []AccessKey `json:"keys"`
}
