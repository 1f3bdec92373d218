/*
 * In-process AAC encoding with ffmpeg's own encoder (libavcodec's "aac"), for scored.mp4.
 *
 * The libraries are opened by lavc.c. The encoder is set up as
 * `ffmpeg -c:a aac -aac_coder fast -b:a 192k -flags:a +bitexact` sets it up for 48 kHz
 * stereo, so the packets are the same bytes (score::aac tests). See
 * firmware/src/score/aac.rs for the Rust side.
 */
#include <stdlib.h>
#include <string.h>

#include "lavc.h"

#define api ut_api

struct ut_aac {
    AVCodecContext *ctx;
    AVFrame *frame;
    AVPacket *packet;
    int channels;
    int64_t pts;
};

typedef void (*ut_packet_cb)(void *user, const uint8_t *data, int size);

void ut_aac_close(struct ut_aac *e)
{
    if (!e)
        return;
    api.frame_free(&e->frame);
    api.packet_free(&e->packet);
    api.free_context(&e->ctx);
    free(e);
}

/* A new encoder (after ut_aac_load succeeded): 0, or a negative libav error code. */
int ut_aac_open(struct ut_aac **out, int sample_rate, int channels, int64_t bit_rate,
                const char *coder, int frame_len, int *initial_padding)
{
    *out = NULL;
    const AVCodec *codec = api.find_encoder_by_name("aac");
    if (!codec)
        return AVERROR_ENCODER_NOT_FOUND;
    struct ut_aac *e = calloc(1, sizeof *e);
    if (!e)
        return AVERROR(ENOMEM);
    e->channels = channels;
    int r = AVERROR(ENOMEM);
    if (!(e->ctx = api.alloc_context3(codec)) || !(e->frame = api.frame_alloc())
        || !(e->packet = api.packet_alloc()))
        goto fail;
    AVCodecContext *c = e->ctx;
    c->sample_fmt = AV_SAMPLE_FMT_FLTP;
    c->sample_rate = sample_rate;
    c->bit_rate = bit_rate;
    c->time_base = (AVRational){1, sample_rate};
    c->flags |= AV_CODEC_FLAG_BITEXACT;
#if UT_CH_LAYOUT
    api.channel_layout_default(&c->ch_layout, channels);
#else
    c->channels = channels;
    c->channel_layout = channels == 1 ? AV_CH_LAYOUT_MONO : AV_CH_LAYOUT_STEREO;
#endif
    if ((r = api.opt_set(c, "aac_coder", coder, AV_OPT_SEARCH_CHILDREN)) < 0)
        goto fail;
    if ((r = api.open2(c, codec, NULL)) < 0)
        goto fail;
    if (c->frame_size != frame_len) {
        r = AVERROR(EINVAL);
        goto fail;
    }
    AVFrame *f = e->frame;
    f->format = AV_SAMPLE_FMT_FLTP;
    f->sample_rate = sample_rate;
    f->nb_samples = frame_len;
#if UT_CH_LAYOUT
    api.channel_layout_default(&f->ch_layout, channels);
#else
    f->channels = channels;
    f->channel_layout = c->channel_layout;
#endif
    if ((r = api.frame_get_buffer(f, 0)) < 0)
        goto fail;
    *initial_padding = c->initial_padding;
    *out = e;
    return 0;
fail:
    ut_aac_close(e);
    return r;
}

/* Copies the encoder's AudioSpecificConfig into buf; its length (which may exceed len). */
int ut_aac_config(const struct ut_aac *e, uint8_t *buf, int len)
{
    int n = e->ctx->extradata_size;
    if (e->ctx->extradata && n > 0)
        memcpy(buf, e->ctx->extradata, n < len ? n : len);
    return n;
}

/* Hands each packet the encoder has ready to cb; 0 once it wants input (or has ended). */
static int drain(struct ut_aac *e, ut_packet_cb cb, void *user)
{
    for (;;) {
        int r = api.receive_packet(e->ctx, e->packet);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0)
            return r;
        cb(user, e->packet->data, e->packet->size);
        api.packet_unref(e->packet);
    }
}

/*
 * Encodes `frames` (1..=frame_len) samples per channel of interleaved 16-bit PCM, converted
 * to float as ffmpeg's resampler converts s16 (x / 32768), or, with frames == 0, flushes the
 * encoder. Each finished packet goes to cb. 0, or a negative libav error code.
 */
int ut_aac_encode(struct ut_aac *e, const int16_t *pcm, int frames, ut_packet_cb cb, void *user)
{
    int r;
    if (frames == 0) {
        if ((r = api.send_frame(e->ctx, NULL)) < 0)
            return r;
        return drain(e, cb, user);
    }
    AVFrame *f = e->frame;
    if (frames > e->ctx->frame_size)
        return AVERROR(EINVAL);
    /* A buffer the encoder still holds is replaced by one of this size. */
    f->nb_samples = e->ctx->frame_size;
    if ((r = api.frame_make_writable(f)) < 0)
        return r;
    const float scale = 1.0f / 32768.0f;
    for (int ch = 0; ch < e->channels; ch++) {
        float *dst = (float *)f->extended_data[ch];
        for (int i = 0; i < frames; i++)
            dst[i] = (float)pcm[i * e->channels + ch] * scale;
    }
    f->nb_samples = frames;
    f->pts = e->pts;
    e->pts += frames;
    if ((r = api.send_frame(e->ctx, f)) < 0)
        return r;
    return drain(e, cb, user);
}
