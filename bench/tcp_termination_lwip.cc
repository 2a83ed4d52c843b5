// Stack (b) of bench_tcp_termination: Debian's lwIP (liblwip-dev) as packaged, whose lwipopts.h
// (the GNU Hurd port's) was used to build the library: NO_SYS=0 with a tcpip thread and core
// locking. The pump reads tunC and feeds each packet to an lwIP netif under the core lock on its
// own thread: ip_input is the netif's input, not tcpip_input, whose mailbox would add a thread
// hop per packet. A raw-API server answers in lwIP's callbacks on that thread, and the netif's
// output writes into tunC. The tcpip thread runs lwIP's timers.
#include <poll.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <future>
#include <mutex>
#include <unordered_map>

#include "bench/tcp_termination.h"

// The packaged lwipopts.h declares the core-lock functions without C linkage of its own.
extern "C" {
#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "lwip/tcpip.h"
}

namespace airlock::bench::tcp_termination {
namespace {

constexpr err_t kOk = ERR_OK;  // err_t is s8_t, its values an enum

// Holds lwIP's core lock: the raw API and netif input need it off the tcpip thread.
class CoreLock {
 public:
  CoreLock() { LOCK_TCPIP_CORE(); }
  ~CoreLock() { UNLOCK_TCPIP_CORE(); }
  CoreLock(const CoreLock&) = delete;
  CoreLock& operator=(const CoreLock&) = delete;
};

// lwIP is one global stack per process; its tcpip thread lives until the process ends.
void start_lwip() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::promise<void> ready;
    tcpip_init([](void* p) { static_cast<std::promise<void>*>(p)->set_value(); }, &ready);
    ready.get_future().wait();
  });
}

class LwipServer : public Server {
 public:
  LwipServer(TunDevice& tunc, const ServerOptions& options) : Server(options), tunc_(tunc) {
    start_lwip();
    ip4_addr_t address, netmask, gateway;
    ip4addr_aton(kServerIp, &address);
    ip4addr_aton("255.255.255.0", &netmask);
    ip4_addr_set_zero(&gateway);
    CoreLock lock;
    if (!netif_add(&netif_, &address, &netmask, &gateway, this, &LwipServer::init_netif,
                   ip_input)) {
      die("lwIP: netif_add failed");
    }
    netif_set_up(&netif_);
    netif_set_link_up(&netif_);
    listeners_[0] = listen_on(kRrPort);
    listeners_[1] = listen_on(kBulkPort);
    pump_ = std::thread(&LwipServer::pump, this);
  }
  ~LwipServer() override {
    signal_stop();
    pump_.join();
    CoreLock lock;
    for (auto& [key, c] : conns_) {
      detach(c->pcb);
      tcp_abort(c->pcb);
    }
    conns_.clear();
    for (tcp_pcb* l : listeners_) tcp_close(l);
    netif_remove(&netif_);
  }

 private:
  struct Conn {
    LwipServer* server;
    tcp_pcb* pcb;
    bool bulk;
    size_t request_bytes = 0;
    uint64_t bulk_left = 0;
    uint64_t bulk_sent = 0;
  };

  static err_t init_netif(netif* n) {
    n->name[0] = 't';
    n->name[1] = 'b';
    n->mtu = kMtu;
    n->output = &LwipServer::output;
    return ERR_OK;
  }

  // Writes one IP packet into tunC; a chained pbuf becomes one writev, still one packet.
  static err_t output(netif* n, pbuf* p, const ip4_addr_t*) {
    iovec iov[16];
    int count = 0;
    for (pbuf* q = p; q != nullptr && count < 16; q = q->next) iov[count++] = {q->payload, q->len};
    const int fd = static_cast<LwipServer*>(n->state)->tunc_.fd();
    return ::writev(fd, iov, count) == p->tot_len ? ERR_OK : ERR_IF;
  }

  tcp_pcb* listen_on(uint16_t port) {
    tcp_pcb* pcb = tcp_new();
    if (pcb == nullptr || tcp_bind(pcb, IP4_ADDR_ANY, port) != ERR_OK) die("lwIP: tcp_bind");
    tcp_pcb* listener = tcp_listen_with_backlog(pcb, 255);
    if (listener == nullptr) die("lwIP: tcp_listen");
    tcp_arg(listener, this);
    tcp_accept(listener, &LwipServer::on_accept);
    return listener;
  }

  // Reads a burst from tunC outside the lock, then takes the core lock once for all of it.
  void pump() {
    std::vector<std::vector<uint8_t>> packets(kBurst, std::vector<uint8_t>(2048));
    std::vector<long> sizes(kBurst);
    DelayLine delay(options_.delay);
    pollfd fds[] = {{tunc_.fd(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    while (true) {
      if (::poll(fds, 2, delay.timeout_ms()) < 0 && errno != EINTR) die(errno_text("poll"));
      if (fds[1].revents != 0) return;
      int n = 0;
      if (fds[0].revents & POLLIN) {
        for (; n < kBurst && (sizes[n] = tunc_.read_packet(packets[n])) > 0; ++n) {
        }
        if (n < kBurst && sizes[n] < 0) die("pump: tunC read failed");
      }
      if (n == 0 && !delay.enabled()) continue;
      CoreLock lock;
      for (int i = 0; i < n; ++i) {
        const std::span<const uint8_t> packet(packets[i].data(), static_cast<size_t>(sizes[i]));
        if (delay.enabled()) {
          delay.push(packet);
        } else {
          input(packet);
        }
      }
      delay.release([this](std::span<const uint8_t> packet) { input(packet); });
    }
  }

  void input(std::span<const uint8_t> packet) {
    const auto size = static_cast<uint16_t>(packet.size());
    pbuf* p = pbuf_alloc(PBUF_RAW, size, PBUF_RAM);
    if (p == nullptr) die("lwIP: pbuf_alloc");
    pbuf_take(p, packet.data(), size);
    if (netif_.input(p, &netif_) != ERR_OK) pbuf_free(p);
  }

  static void detach(tcp_pcb* pcb) {
    tcp_arg(pcb, nullptr);
    tcp_recv(pcb, nullptr);
    tcp_sent(pcb, nullptr);
    tcp_err(pcb, nullptr);
  }

  // Returns what the callback that closed must return: ERR_ABRT if lwIP freed the pcb.
  err_t close(Conn& c) {
    tcp_pcb* pcb = c.pcb;
    detach(pcb);
    conns_.erase(&c);
    if (tcp_close(pcb) == ERR_OK) return ERR_OK;
    tcp_abort(pcb);
    return ERR_ABRT;
  }

  // Queues the stream in pieces of up to 16 KiB while TCP_SND_BUF has room (on_sent calls it
  // again as the client acknowledges), and closes once all of it is queued.
  err_t fill(Conn& c) {
    while (c.bulk_left > 0) {
      const size_t at = c.bulk_sent % kChunk;
      const size_t len = std::min<uint64_t>({kChunk - at, c.bulk_left, tcp_sndbuf(c.pcb)});
      if (len == 0) break;
      const err_t e = tcp_write(c.pcb, payloads().chunk.data() + at, static_cast<uint16_t>(len),
                                TCP_WRITE_FLAG_COPY);
      if (e == ERR_MEM) break;
      if (e != ERR_OK) die("lwIP: tcp_write failed in the bulk stream");
      c.bulk_sent += len;
      c.bulk_left -= len;
      bulk_bytes_ += len;
    }
    tcp_output(c.pcb);
    return c.bulk_left == 0 ? close(c) : kOk;
  }

  static err_t on_accept(void* arg, tcp_pcb* pcb, err_t err) {
    auto* self = static_cast<LwipServer*>(arg);
    if (err != ERR_OK || pcb == nullptr) return ERR_VAL;
    ++self->accepted_;
    const bool bulk = pcb->local_port == kBulkPort;
    auto owned =
        std::make_unique<Conn>(Conn{self, pcb, bulk, 0, bulk ? self->options_.bulk_bytes : 0, 0});
    Conn* c = owned.get();
    self->conns_.emplace(c, std::move(owned));
    tcp_arg(pcb, c);
    tcp_nagle_disable(pcb);
    tcp_recv(pcb, &LwipServer::on_recv);
    tcp_sent(pcb, &LwipServer::on_sent);
    tcp_err(pcb, &LwipServer::on_error);
    return bulk ? self->fill(*c) : kOk;
  }

  static err_t on_recv(void* arg, tcp_pcb* pcb, pbuf* p, err_t err) {
    Conn& c = *static_cast<Conn*>(arg);
    if (p == nullptr || err != ERR_OK) {
      if (p != nullptr) pbuf_free(p);
      return c.server->close(c);
    }
    c.request_bytes += p->tot_len;
    tcp_recved(pcb, p->tot_len);
    pbuf_free(p);
    for (; c.request_bytes >= kRequestSize && !c.bulk; c.request_bytes -= kRequestSize) {
      if (tcp_write(pcb, payloads().response.data(), kResponseSize, TCP_WRITE_FLAG_COPY) !=
          ERR_OK) {
        die("lwIP: tcp_write failed for a response");
      }
      ++c.server->responses_;
    }
    tcp_output(pcb);
    return ERR_OK;
  }

  static err_t on_sent(void* arg, tcp_pcb*, u16_t) {
    Conn& c = *static_cast<Conn*>(arg);
    return c.bulk ? c.server->fill(c) : kOk;
  }

  static void on_error(void* arg, err_t) {  // lwIP has already freed the pcb
    auto* c = static_cast<Conn*>(arg);
    if (c != nullptr) c->server->conns_.erase(c);
  }

  TunDevice& tunc_;
  netif netif_{};
  tcp_pcb* listeners_[2] = {};
  std::unordered_map<const Conn*, std::unique_ptr<Conn>> conns_;  // under the core lock
  std::thread pump_;
};

}  // namespace

std::unique_ptr<Server> lwip_server(TunDevice& tunc, const ServerOptions& options) {
  return std::make_unique<LwipServer>(tunc, options);
}

std::string lwip_build_options() {
  char text[512];
  std::snprintf(text, sizeof(text),
                "lwIP %s: NO_SYS=%d LWIP_TCPIP_CORE_LOCKING=%d MEM_LIBC_MALLOC=%d "
                "MEMP_MEM_MALLOC=%d TCP_MSS=%d TCP_WND=%d LWIP_WND_SCALE=%d TCP_RCV_SCALE=%d "
                "TCP_SND_BUF=%d TCP_SND_QUEUELEN=%d LWIP_CHECKSUM_ON_COPY=%d "
                "LWIP_TCP_TIMESTAMPS=%d LWIP_TCP_SACK_OUT=%d",
                LWIP_VERSION_STRING, NO_SYS, LWIP_TCPIP_CORE_LOCKING, MEM_LIBC_MALLOC,
                MEMP_MEM_MALLOC, TCP_MSS, TCP_WND, LWIP_WND_SCALE, TCP_RCV_SCALE, TCP_SND_BUF,
                static_cast<int>(TCP_SND_QUEUELEN), LWIP_CHECKSUM_ON_COPY, LWIP_TCP_TIMESTAMPS,
                LWIP_TCP_SACK_OUT);
  return text;
}

}  // namespace airlock::bench::tcp_termination
