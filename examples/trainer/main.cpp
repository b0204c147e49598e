// A minimal trainer on a cluster of service nodes. The trainer actor only
// knows a completer_actor handle: it cannot tell the cluster balancer from a
// local completer. It sends G sample_groups of N, waits for every result and
// prints a summary.
//
//   trainer --nodes HOST:PORT,... [--model M] [--groups G] [--group-size N]
//           [caf options, e.g. --openssl.certificate=... --openssl.key=...
//            --openssl.cafile=...]
//
// Without --nodes it runs self-contained: an in-process Sail emulator and two
// service nodes on 127.0.0.1 (each its own actor system), then the trainer.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <sail_tinker/actors/cluster.hpp>
#include <sail_tinker/actors/runtime.hpp>
#include <sail_tinker/actors/service.hpp>
#include <sail_tinker/actors/system_config.hpp>
#include <sail_tinker/emulator/emulator.hpp>
#include <sail_tinker/messages/error.hpp>

namespace {

struct trainer_state {
  static inline const char* name = "example.trainer";
  size_t open = 0;
  size_t ok = 0;
  size_t failed = 0;
  size_t tokens = 0;
};

/// The trainer: G groups of N samples through `completer`, then it reports
/// (ok, failed) to `done` and quits.
caf::behavior trainer(caf::stateful_actor<trainer_state>* self,
                      sail::completer_actor completer, uint32_t groups, uint32_t n,
                      caf::actor done) {
  self->state.open = groups;
  for (uint32_t g = 0; g < groups; ++g) {
    sail::sample_request req;
    req.prompt.tokens = {1, 2, 3, static_cast<int64_t>(g % 50) + 4};
    // Every request has a finite timeout and an error handler.
    self->request(completer, std::chrono::minutes(30), sail::atom::sample_group_v, req, n)
      .then(
        [self, done](sail::group_result& r) {
          for (auto& m : r.members) {
            if (m.ok()) {
              ++self->state.ok;
              self->state.tokens += m.result->tokens.size();
            } else {
              ++self->state.failed;
            }
          }
          if (--self->state.open == 0) {
            self->send(done, self->state.ok, self->state.failed, self->state.tokens);
            self->quit();
          }
        },
        [self, done, n](caf::error& err) {
          std::cerr << "group failed: " << sail::render(err) << '\n';
          self->state.failed += n;
          if (--self->state.open == 0) {
            self->send(done, self->state.ok, self->state.failed, self->state.tokens);
            self->quit();
          }
        });
  }
  return {};
}

/// One self-contained service node (its own actor system and runtime).
struct local_node {
  sail::node_config cfg;
  caf::actor_system sys{cfg};
  std::unique_ptr<sail::runtime> rt;
  std::unique_ptr<sail::service_node> svc;

  explicit local_node(const sail::emulator::server& emu) {
    auto opts = sail::runtime_options{};
    opts.sail_base_url = emu.base_url();
    opts.sail_api_key = emu.config().sail_api_key;
    auto started = sail::runtime::start(sys, opts);
    if (!started)
      throw std::runtime_error(sail::render(started.error()));
    rt = std::move(*started);
    sail::service_options so;
    so.host = "127.0.0.1";
    auto published = sail::service_node::start(*rt, so);
    if (!published)
      throw std::runtime_error(sail::render(published.error()));
    svc = std::move(*published);
  }

  ~local_node() {
    svc->shutdown();
    rt->shutdown();
  }
};

std::string arg_value(std::vector<std::string>& args, const std::string& name,
                      std::string fallback) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == name) {
      auto v = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      return v;
    }
  return fallback;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto nodes_text = arg_value(args, "--nodes", "");
  auto model = arg_value(args, "--model", "");
  auto groups = static_cast<uint32_t>(std::stoul(arg_value(args, "--groups", "8")));
  auto n = static_cast<uint32_t>(std::stoul(arg_value(args, "--group-size", "4")));

  std::unique_ptr<sail::emulator::server> emu;
  std::vector<std::unique_ptr<local_node>> nodes;
  if (nodes_text.empty()) {
    sail::emulator::options eo;
    eo.threads = 1;
    emu = std::make_unique<sail::emulator::server>(eo);
    for (int i = 0; i < 2; ++i) {
      nodes.push_back(std::make_unique<local_node>(*emu));
      nodes_text += (i ? "," : "") + std::string{"127.0.0.1:"}
                    + std::to_string(nodes.back()->svc->port());
    }
    if (model.empty())
      model = "emulator/toy";
  }
  if (model.empty())
    model = "moonshotai/Kimi-K2.6";

  // The trainer's own actor system: caf options (heartbeats, openssl.*) from
  // the remaining arguments / caf-application.ini.
  sail::node_config cfg;
  std::vector<char*> caf_argv{argv[0]};
  for (auto& a : args)
    caf_argv.push_back(a.data());
  if (auto err = cfg.parse(static_cast<int>(caf_argv.size()), caf_argv.data())) {
    std::cerr << "bad option: " << caf::to_string(err) << '\n';
    return 2;
  }
  int rc = 0;
  {
    caf::actor_system sys{cfg};
    auto list = sail::parse_node_list(nodes_text);
    if (!list) {
      std::cerr << sail::render(list.error()) << '\n';
      return 2;
    }
    sail::cluster_options opts;
    opts.nodes = *list;
    opts.config.model = model;
    opts.config.max_tokens = 16;
    auto cl = sail::cluster::start(sys, opts);
    if (!cl) {
      std::cerr << sail::render(cl.error()) << '\n';
      return 2;
    }
    // Optional: let every node connect first, so the first wave spreads out
    // (samples sent earlier simply wait for the first ready node).
    (*cl)->wait_ready(list->size(), std::chrono::seconds(30));
    {
      caf::scoped_actor self{sys};
      self->spawn(trainer, (*cl)->handle(), groups, n, caf::actor_cast<caf::actor>(self));
      self->receive(
        [&](size_t ok, size_t failed, size_t tokens) {
          std::cout << "trainer: " << ok << " samples ok, " << failed << " failed, "
                    << tokens << " tokens\n";
          rc = failed == 0 ? 0 : 1;
        },
        caf::after(std::chrono::minutes(35)) >> [&] {
          std::cerr << "trainer: no result\n";
          rc = 1;
        });
    }
    for (auto& s : (*cl)->status())
      std::cout << "  node " << s.address.to_string() << ": " << sail::to_string(s.state)
                << ", completed " << s.completed << ", re-routed " << s.rerouted << '\n';
    (*cl)->shutdown();
  }
  nodes.clear();
  return rc;
}
