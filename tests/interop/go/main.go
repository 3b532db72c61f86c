// Command peer is a go-libp2p COOEE peer for interop tests, built like the production Go peers:
// TCP + Noise + yamux, Ed25519 key, gossipsub with strict message signing.
//
//	peer -mode relay|subscribe|submit [-port N] [-bootstrap MADDR]... [-age-identity FILE]
//	     [-peer-key FILE] [-record FILE -agent-seed HEX -leader-bundle TEXT -address UCXL]
//
// In submit mode it is an agent sending a PR or DR (submit.go). It joins the COOEE topics (so it relays them) and prints JSON lines on stdout:
// {"event":"ready",...}, {"event":"connected",...} and, in subscribe mode,
// {"event":"message","topic":...,"from":...,"data_b64":...}. With -age-identity, a message that
// is a JSON envelope with a "body" field has that body opened as ASCII-armored age, as the Go
// Leader does, and the plaintext is printed as "plaintext_b64" (or the failure as "open_error").
// It stops on SIGTERM or when stdin closes.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

var topics = []string{
	"cooee/enrol/v1", "cooee/assignment/v1", "cooee/availability/v1", "cooee/intervention/v1",
	submissionTopic, receiptTopic,
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

var outMu sync.Mutex

func emit(event map[string]any) {
	line, _ := json.Marshal(event)
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

func main() {
	mode := flag.String("mode", "relay", "relay or subscribe")
	port := flag.Int("port", 0, "TCP port on 127.0.0.1")
	identityFile := flag.String("age-identity", "", "age identity file to open envelope bodies")
	keyFile := flag.String("peer-key", "", "libp2p private key file (MarshalPrivateKey form)")
	recordFile := flag.String("record", "", "submit: the PR or DR record, canonical JSON")
	agentSeed := flag.String("agent-seed", "", "submit: the agent's Ed25519 seed, hex")
	leaderBundle := flag.String("leader-bundle", "", "submit: the Leader key bundle")
	address := flag.String("address", "", "submit: the envelope address")
	var bootstrap multiFlag
	flag.Var(&bootstrap, "bootstrap", "multiaddr of a peer to keep connected (repeatable)")
	flag.Parse()
	if *mode != "relay" && *mode != "subscribe" && *mode != "submit" {
		fmt.Fprintln(os.Stderr, "peer: -mode must be relay, subscribe or submit")
		os.Exit(2)
	}
	var sub *submitter
	if *mode == "submit" {
		var err error
		if sub, err = newSubmitter(*recordFile, *agentSeed, *leaderBundle, *address); err != nil {
			fail(err)
		}
	}
	var identities []age.Identity
	if *identityFile != "" {
		f, err := os.Open(*identityFile)
		if err != nil {
			fail(err)
		}
		identities, err = age.ParseIdentities(f)
		f.Close()
		if err != nil {
			fail(err)
		}
	}

	options := []libp2p.Option{
		libp2p.ListenAddrStrings(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", *port)),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
	}
	if *keyFile != "" {
		raw, err := os.ReadFile(*keyFile)
		if err != nil {
			fail(err)
		}
		priv, err := crypto.UnmarshalPrivateKey(raw)
		if err != nil {
			fail(err)
		}
		options = append(options, libp2p.Identity(priv))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := libp2p.New(options...)
	if err != nil {
		fail(err)
	}
	defer h.Close()
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
	)
	if err != nil {
		fail(err)
	}
	joined := map[string]*pubsub.Topic{}
	for _, name := range topics {
		topic, err := ps.Join(name)
		if err != nil {
			fail(err)
		}
		subscription, err := topic.Subscribe()
		if err != nil {
			fail(err)
		}
		joined[name] = topic
		go read(ctx, h, subscription, *mode != "relay", identities, sub)
	}
	if sub != nil {
		go func() {
			// What an agent's outbox does: the same bytes until the receipt arrives.
			for ctx.Err() == nil && !sub.answered.Load() {
				if err := joined[submissionTopic].Publish(ctx, sub.envelope); err == nil {
					emit(map[string]any{"event": "published", "id": sub.id})
				}
				time.Sleep(time.Second)
			}
		}()
	}
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, fmt.Sprintf("%s/p2p/%s", a, h.ID()))
	}
	emit(map[string]any{"event": "ready", "peer_id": h.ID().String(), "addrs": addrs})
	for _, addr := range bootstrap {
		go keepConnected(ctx, h, addr)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	stdinClosed := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	select {
	case <-signals:
	case <-stdinClosed:
	}
}

func read(
	ctx context.Context, h host.Host, sub *pubsub.Subscription, print bool, ids []age.Identity,
	submit *submitter,
) {
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if !print || msg.ReceivedFrom == h.ID() {
			continue
		}
		if submit != nil {
			if msg.GetTopic() == receiptTopic {
				if record, err := submit.openReceipt(msg.Data, ids); err == nil {
					submit.answered.Store(true)
					emit(map[string]any{"event": "receipt", "record": record})
				} else {
					emit(map[string]any{"event": "not_ours", "error": err.Error()})
				}
			}
			continue
		}
		event := map[string]any{
			"event":    "message",
			"topic":    msg.GetTopic(),
			"from":     msg.GetFrom().String(),
			"data_b64": base64.StdEncoding.EncodeToString(msg.Data),
		}
		if len(ids) > 0 {
			plaintext, err := openBody(msg.Data, ids)
			if err != nil {
				event["open_error"] = err.Error()
			} else {
				event["plaintext_b64"] = base64.StdEncoding.EncodeToString(plaintext)
			}
		}
		emit(event)
	}
}

// openBody opens an envelope's "body": ASCII-armored age ciphertext.
func openBody(data []byte, ids []age.Identity) ([]byte, error) {
	var envelope struct {
		Body *string `json:"body"`
	}
	if err := json.Unmarshal(data, &envelope); err != nil {
		return nil, fmt.Errorf("not a JSON envelope: %w", err)
	}
	if envelope.Body == nil {
		return nil, fmt.Errorf("envelope has no body")
	}
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(*envelope.Body)), ids...)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, r); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// keepConnected redials a peer whenever it is not connected, clearing the dial backoff first.
func keepConnected(ctx context.Context, h host.Host, addr string) {
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		fail(err)
	}
	for ctx.Err() == nil {
		if h.Network().Connectedness(info.ID) != network.Connected {
			if s, ok := h.Network().(*swarm.Swarm); ok {
				s.Backoff().Clear(info.ID)
			}
			dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := h.Connect(dialCtx, *info); err != nil {
				emit(map[string]any{"event": "dial_failed", "addr": addr, "error": err.Error()})
			} else {
				emit(map[string]any{"event": "connected", "addr": addr})
			}
			cancel()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "peer:", err)
	os.Exit(1)
}
