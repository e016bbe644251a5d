// C ABI over Debian's webrtc-audio-processing 0.3 (the AEC "as shipped" in PulseAudio's
// module-echo-cancel era): echo cancellation with extended filter and delay-agnostic mode,
// moderate noise suppression, high-pass filter. 10 ms mono int16 frames.
#include <cstdint>
#include <cstring>

#include <webrtc/common.h>
#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

struct Shim {
  webrtc::AudioProcessing* apm;
  webrtc::AudioFrame capture;
  webrtc::AudioFrame render;
  int frame;
  int rate;
};

static void setup(webrtc::AudioFrame* f, int rate, int frame) {
  f->sample_rate_hz_ = rate;
  f->num_channels_ = 1;
  f->samples_per_channel_ = frame;
}

extern "C" {

void* w03_create(int rate, int noise_suppression) {
  webrtc::Config config;
  config.Set<webrtc::ExtendedFilter>(new webrtc::ExtendedFilter(true));
  config.Set<webrtc::DelayAgnostic>(new webrtc::DelayAgnostic(true));
  Shim* s = new Shim();
  s->apm = webrtc::AudioProcessing::Create(config);
  s->rate = rate;
  s->frame = rate / 100;
  s->apm->high_pass_filter()->Enable(true);
  s->apm->echo_cancellation()->enable_drift_compensation(false);
  s->apm->echo_cancellation()->set_suppression_level(webrtc::EchoCancellation::kModerateSuppression);
  s->apm->echo_cancellation()->Enable(true);
  if (noise_suppression) {
    s->apm->noise_suppression()->set_level(webrtc::NoiseSuppression::kModerate);
    s->apm->noise_suppression()->Enable(true);
  }
  setup(&s->capture, rate, s->frame);
  setup(&s->render, rate, s->frame);
  return s;
}

int w03_process(void* handle, const int16_t* ref, const int16_t* mic, int16_t* out) {
  Shim* s = static_cast<Shim*>(handle);
  std::memcpy(s->render.data_, ref, sizeof(int16_t) * s->frame);
  int rc = s->apm->ProcessReverseStream(&s->render);
  if (rc != 0) return rc;
  std::memcpy(s->capture.data_, mic, sizeof(int16_t) * s->frame);
  s->apm->set_stream_delay_ms(0);
  rc = s->apm->ProcessStream(&s->capture);
  std::memcpy(out, s->capture.data_, sizeof(int16_t) * s->frame);
  return rc;
}

void w03_destroy(void* handle) {
  Shim* s = static_cast<Shim*>(handle);
  delete s->apm;
  delete s;
}
}
