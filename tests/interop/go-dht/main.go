// Command dhtpeer is a go-libp2p node with go-libp2p-kad-dht and a validator for the /cooee/
// namespace, for the DHT interop test: it joins the DHT through a bootstrap peer, GETs one host
// record, checks it as docs/PROTOCOL.md section 11 says (the Leader's signature, key, expiry,
// read key) and opens it with filippo.io/age.
//
//	dhtpeer -bootstrap MADDR -key /cooee/host/N -leader-key B64URL -read-key AGE-SECRET-KEY-1...
//
// It prints one JSON line on stdout: {"event":"opened","host_info":{...}} or
// {"event":"error","error":"..."}, and exits (1 on error).
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"filippo.io/age"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/multiformats/go-multiaddr"
)

const recordContext = "cooee-host-record-v1\n"

// cooeeValidator is the /cooee/ namespace's validator: the rules of PROTOCOL.md section 11.
type cooeeValidator struct {
	leader  ed25519.PublicKey
	readKey string // the age1... recipient of the read key this node holds
}

type hostRecord struct {
	fields map[string]any
	seq    int64
	body   []byte
}

func (v cooeeValidator) parse(key string, value []byte) (*hostRecord, error) {
	decoder := json.NewDecoder(bytes.NewReader(value))
	decoder.UseNumber()
	var fields map[string]any
	if err := decoder.Decode(&fields); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	text := func(name string) string { s, _ := fields[name].(string); return s }
	if text("kind") != "host-record" || fields["schema"] != json.Number("1") {
		return nil, errors.New("not a host-record of schema 1")
	}
	if text("key") != key {
		return nil, fmt.Errorf("record is for %s, not %s", text("key"), key)
	}
	signer, err := base64.RawURLEncoding.DecodeString(text("signer"))
	if err != nil || !bytes.Equal(signer, v.leader) {
		return nil, errors.New("not signed by the trusted Leader key")
	}
	sig, err := base64.RawURLEncoding.DecodeString(text("sig"))
	if err != nil {
		return nil, errors.New("sig is not base64url")
	}
	unsigned := map[string]any{}
	for name, value := range fields {
		if name != "sig" {
			unsigned[name] = value
		}
	}
	// encoding/json sorts map keys and writes no whitespace: canonical for these fields, whose
	// strings hold none of the characters it escapes.
	canonical, err := json.Marshal(unsigned)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(v.leader, append([]byte(recordContext), canonical...), sig) {
		return nil, errors.New("signature does not verify")
	}
	expires, err := time.Parse("2006-01-02T15:04:05Z", text("expires_at"))
	if err != nil || !time.Now().Before(expires) {
		return nil, errors.New("expired")
	}
	if v.readKey != "" && text("read_key") != v.readKey {
		return nil, errors.New("sealed to another read key")
	}
	seq, err := fields["seq"].(json.Number).Int64()
	if err != nil {
		return nil, errors.New("seq is not an integer")
	}
	body, err := base64.RawURLEncoding.DecodeString(text("body"))
	if err != nil {
		return nil, errors.New("body is not base64url")
	}
	return &hostRecord{fields: fields, seq: seq, body: body}, nil
}

func (v cooeeValidator) Validate(key string, value []byte) error {
	_, err := v.parse(key, value)
	return err
}

func (v cooeeValidator) Select(key string, values [][]byte) (int, error) {
	best, bestSeq := -1, int64(-1)
	for i, value := range values {
		if record, err := v.parse(key, value); err == nil && record.seq > bestSeq {
			best, bestSeq = i, record.seq
		}
	}
	if best < 0 {
		return 0, errors.New("no valid record")
	}
	return best, nil
}

func emit(event map[string]any) {
	line, _ := json.Marshal(event)
	os.Stdout.Write(append(line, '\n'))
}

func fail(err error) {
	emit(map[string]any{"event": "error", "error": err.Error()})
	os.Exit(1)
}

func main() {
	bootstrap := flag.String("bootstrap", "", "multiaddr of a DHT peer, with /p2p/")
	key := flag.String("key", "", "the DHT key to get, /cooee/host/<host_id>")
	leaderKey := flag.String("leader-key", "", "the Leader's Ed25519 key, base64url")
	readKey := flag.String("read-key", "", "the read key, AGE-SECRET-KEY-1...")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()

	leader, err := base64.RawURLEncoding.DecodeString(*leaderKey)
	if err != nil || len(leader) != ed25519.PublicKeySize {
		fail(errors.New("-leader-key is not a base64url Ed25519 key"))
	}
	identity, err := age.ParseX25519Identity(*readKey)
	if err != nil {
		fail(fmt.Errorf("-read-key: %w", err))
	}
	addr, err := multiaddr.NewMultiaddr(*bootstrap)
	if err != nil {
		fail(err)
	}
	info, err := peer.AddrInfoFromP2pAddr(addr)
	if err != nil {
		fail(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
	)
	if err != nil {
		fail(err)
	}
	defer h.Close()
	validator := cooeeValidator{leader: leader, readKey: identity.Recipient().String()}
	// go-libp2p-kad-dht allows no namespace but pk and ipns under its default prefix, /ipfs;
	// py-libp2p speaks /ipfs/kad/1.0.0 only. An application prefix with the v1 protocol id
	// overridden gives both: the /cooee/ validator and the protocol the Python nodes speak.
	kad, err := dht.New(h,
		dht.ProtocolPrefix("/cooee"),
		dht.V1ProtocolOverride("/ipfs/kad/1.0.0"),
		dht.Mode(dht.ModeServer),
		dht.NamespacedValidator("cooee", validator),
		dht.BootstrapPeers(*info),
	)
	if err != nil {
		fail(err)
	}
	defer kad.Close()
	if err := h.Connect(ctx, *info); err != nil {
		fail(fmt.Errorf("dial %s: %w", *bootstrap, err))
	}
	// The table fills from the connection once identify says the peer serves the DHT.
	var value []byte
	for {
		value, err = kad.GetValue(ctx, *key)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			fail(fmt.Errorf("get %s: %w", *key, err))
		}
		time.Sleep(200 * time.Millisecond)
	}
	record, err := validator.parse(*key, value)
	if err != nil {
		fail(err)
	}
	reader, err := age.Decrypt(bytes.NewReader(record.body), identity)
	if err != nil {
		fail(fmt.Errorf("open: %w", err))
	}
	plain, err := io.ReadAll(reader)
	if err != nil {
		fail(err)
	}
	var hostInfo map[string]any
	if err := json.Unmarshal(plain, &hostInfo); err != nil {
		fail(err)
	}
	emit(map[string]any{"event": "opened", "seq": record.seq, "host_info": hostInfo, "plaintext": string(plain)})
}
