package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	stratus "github.com/stratus-run/stratus"
)

// ClientUser is the user name outside NATS clients of the embedded server
// connect with (BusConfig.Listen); the password is generated.
const ClientUser = "client"

// ownInboxPrefix starts the reply subjects of the server's own connection
// to the embedded server. Outside clients may subscribe only under
// "_INBOX.", so they never see the replies (JetStream API answers, pulled
// async events) meant for the server.
const ownInboxPrefix = "_STRATUS_INBOX"

// ClientCredentials is what an outside NATS client needs to connect to
// the embedded server: kept as JSON in BusConfig.ClientCreds.
type ClientCredentials struct {
	// URL is the embedded server's client URL at its last start, without
	// credentials.
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// URLWithAuth returns URL with the user and password in it
// (nats://user:password@host:port), the form every NATS client accepts.
func (c ClientCredentials) URLWithAuth() string {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return ""
	}
	u.User = url.UserPassword(c.User, c.Password)
	return u.String()
}

// ReadClientCredentials reads the credentials file the embedded server
// keeps. A missing file wraps stratus.ErrNotFound (the server has not
// started with a NATS listen address yet), a malformed one
// stratus.ErrInvalid.
func ReadClientCredentials(path string) (ClientCredentials, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ClientCredentials{}, fmt.Errorf("nats credentials %s: %w", path, stratus.ErrNotFound)
	}
	if err != nil {
		return ClientCredentials{}, fmt.Errorf("read nats credentials: %w", err)
	}
	var c ClientCredentials
	if err := json.Unmarshal(b, &c); err != nil {
		return ClientCredentials{}, fmt.Errorf("nats credentials %s: %v: %w", path, err, stratus.ErrInvalid)
	}
	if c.User == "" || c.Password == "" {
		return ClientCredentials{}, fmt.Errorf("nats credentials %s: no user or password: %w", path, stratus.ErrInvalid)
	}
	return c, nil
}

// loadClientCredentials returns the credentials kept at path, or new ones
// (user ClientUser, a random 128-bit password) when there is no file yet.
// The file is written back by saveClientCredentials once the URL is known.
func loadClientCredentials(path string) (ClientCredentials, error) {
	c, err := ReadClientCredentials(path)
	if err == nil || !errors.Is(err, stratus.ErrNotFound) {
		return c, err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return ClientCredentials{}, fmt.Errorf("generate nats password: %w", err)
	}
	return ClientCredentials{User: ClientUser, Password: hex.EncodeToString(b[:])}, nil
}

// saveClientCredentials writes c to path with mode 0600, replacing the
// file whole (a new file, renamed over the old one, so the mode of an
// older file does not carry over and a crash leaves one or the other).
func saveClientCredentials(path string, c ClientCredentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode nats credentials: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("save nats credentials: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save nats credentials: %w", err)
	}
	return nil
}

// clientPermissions are what an outside client may do: publish to topic
// subjects (stored by the topic stream) and receive replies (JetStream's
// publish acknowledgements) on its own inbox. Everything else is refused:
// the async queue's subjects, every other subject, JetStream's API
// ($JS.>), KV buckets ($KV.>), the system account ($SYS.>), subscribing to
// anything but an inbox.
func clientPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{topicSubjectPrefix + "*"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// authOptions sets the users of the embedded server's options: the
// outside client c with clientPermissions, and the server's own
// connection, an nkey made for this start only, with no limits. It returns
// the option that authenticates the server's own connection. The client's
// password is given to nats-server as a bcrypt hash (of the lowest cost:
// the password is random, so the hash needs no slowness; it only keeps
// nats-server from warning about plain text).
func authOptions(opts *server.Options, c ClientCredentials) (nats.Option, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(c.Password), bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("hash nats password: %w", err)
	}
	own, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create nats nkey: %w", err)
	}
	pub, err := own.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("create nats nkey: %w", err)
	}
	opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	opts.Users = []*server.User{{Username: c.User, Password: string(hash), Permissions: clientPermissions()}}
	return nats.Nkey(pub, own.Sign), nil
}
