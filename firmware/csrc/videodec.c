/*
 * In-process video decoding for the file source: one libavcodec decoder fed the samples of
 * an MP4/MOV track (read by undertone's own MP4 reader), each picture scaled to 8-bit luma
 * at the analysis size by libswscale, set up as ffmpeg's `scale=W:H:flags=area,format=gray`
 * filter sets it up (the same bytes: source::lavcdec tests). See
 * firmware/src/source/lavcdec.rs for the Rust side and firmware/src/lavc.rs for the loading.
 */
#include <stdlib.h>
#include <string.h>

#include "lavc.h"

#define api ut_api

struct ut_vdec {
    struct ut_log_sink log; /* first: the log callback finds it through ctx->opaque */
    AVCodecContext *ctx;
    AVPacket *packet;
    AVFrame *frame;
    struct SwsContext *sws;
    int sws_w, sws_h, sws_format, sws_range;
    int out_w, out_h;
    uint8_t *gray;
};

/* Called with each picture: its presentation time (as the packets gave it), out_w x out_h
 * bytes of luma, and how many errors the codec has reported so far; a non-zero return stops
 * decoding (ut_vdec_send returns 1). */
typedef int (*ut_frame_cb)(void *user, int64_t pts, const uint8_t *gray, int errors);

void ut_vdec_close(struct ut_vdec *d)
{
    if (!d)
        return;
    api.frame_free(&d->frame);
    api.packet_free(&d->packet);
    api.free_context(&d->ctx);
    if (d->sws)
        api.sws_free_context(d->sws);
    free(d->gray);
    free(d);
}

/*
 * A decoder of `codec` (libavcodec's name) for pictures of width x height, with the codec
 * configuration record `extradata` (an MP4 sample entry's avcC or hvcC), `threads` decoding
 * threads, the in-loop deblocking filter skipped if `skip_loop_filter`, giving out_w x
 * out_h luma. 0, or a negative libav error code.
 */
int ut_vdec_open(struct ut_vdec **out, const char *codec, const uint8_t *extradata,
                 int extradata_len, int width, int height, int threads, int skip_loop_filter,
                 int out_w, int out_h)
{
    *out = NULL;
    const AVCodec *c = api.find_decoder_by_name(codec);
    if (!c)
        return AVERROR_DECODER_NOT_FOUND;
    struct ut_vdec *d = calloc(1, sizeof *d);
    if (!d)
        return AVERROR(ENOMEM);
    int r = AVERROR(ENOMEM);
    d->out_w = out_w;
    d->out_h = out_h;
    d->sws_format = -1;
    if (!(d->ctx = api.alloc_context3(c)) || !(d->packet = api.packet_alloc())
        || !(d->frame = api.frame_alloc()) || !(d->gray = malloc((size_t)out_w * out_h)))
        goto fail;
    AVCodecContext *x = d->ctx;
    x->opaque = d;
    x->width = width;
    x->height = height;
    x->thread_count = threads;
    if (skip_loop_filter)
        x->skip_loop_filter = AVDISCARD_ALL;
    if (extradata_len > 0) {
        if (!(x->extradata = api.mallocz((size_t)extradata_len + AV_INPUT_BUFFER_PADDING_SIZE)))
            goto fail;
        memcpy(x->extradata, extradata, extradata_len);
        x->extradata_size = extradata_len;
    }
    if ((r = api.open2(x, c, NULL)) < 0)
        goto fail;
    *out = d;
    return 0;
fail:
    ut_vdec_close(d);
    return r;
}

/* The scaler for the frame's size, format and range, made anew when they change. */
static int scaler(struct ut_vdec *d, const AVFrame *f)
{
    int range = f->color_range;
    if (d->sws && d->sws_w == f->width && d->sws_h == f->height && d->sws_format == f->format
        && d->sws_range == range)
        return 0;
    if (d->sws)
        api.sws_free_context(d->sws);
    d->sws = api.sws_get_context(f->width, f->height, f->format, d->out_w, d->out_h,
                                 AV_PIX_FMT_GRAY8, SWS_AREA, NULL, NULL, NULL);
    if (!d->sws)
        return AVERROR(EINVAL);
    /* As the scale filter does: a frame that states its range is scaled from that range. */
    if (range != AVCOL_RANGE_UNSPECIFIED) {
        int in_full, out_full, brightness, contrast, saturation;
        int *inv_table, *table;
        api.sws_get_colorspace_details(d->sws, &inv_table, &in_full, &table, &out_full,
                                       &brightness, &contrast, &saturation);
        in_full = range == AVCOL_RANGE_JPEG;
        api.sws_set_colorspace_details(d->sws, inv_table, in_full, table, out_full, brightness,
                                       contrast, saturation);
    }
    d->sws_w = f->width;
    d->sws_h = f->height;
    d->sws_format = f->format;
    d->sws_range = range;
    return 0;
}

/* Hands every picture the decoder has ready to cb: 0 once it wants input (or has ended),
 * 1 if cb asked to stop, or a negative libav error code. */
static int drain(struct ut_vdec *d, ut_frame_cb cb, void *user)
{
    for (;;) {
        int r = api.receive_frame(d->ctx, d->frame);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0)
            return r;
        const AVFrame *f = d->frame;
        if ((r = scaler(d, f)) < 0) {
            api.frame_unref(d->frame);
            return r;
        }
        uint8_t *dst[4] = {d->gray, NULL, NULL, NULL};
        int stride[4] = {d->out_w, 0, 0, 0};
        api.sws_scale(d->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst,
                      stride);
        int64_t pts = f->best_effort_timestamp;
        api.frame_unref(d->frame);
        if (cb(user, pts, d->gray, d->log.errors))
            return 1;
    }
}

/*
 * Decodes one sample (size bytes at data, presented at pts, a sync sample if key), or, with
 * data NULL, drains the decoder at the end. 0, 1 if the callback stopped it, or a negative
 * libav error code (a packet the decoder refuses: decoding can go on with the next one).
 */
int ut_vdec_send(struct ut_vdec *d, const uint8_t *data, int size, int64_t pts, int64_t dts,
                 int key, ut_frame_cb cb, void *user)
{
    int r;
    if (!data) {
        if ((r = api.send_packet(d->ctx, NULL)) < 0 && r != AVERROR_EOF)
            return r;
        return drain(d, cb, user);
    }
    AVPacket *p = d->packet;
    p->data = (uint8_t *)data;
    p->size = size;
    p->pts = pts;
    p->dts = dts;
    p->flags = key ? AV_PKT_FLAG_KEY : 0;
    r = api.send_packet(d->ctx, p);
    int s = 0;
    if (r == AVERROR(EAGAIN) && (s = drain(d, cb, user)) == 0)
        r = api.send_packet(d->ctx, p); /* its output was full: taken, the packet goes in */
    p->data = NULL;
    p->size = 0;
    if (s == 0)
        s = drain(d, cb, user);
    return s != 0 ? s : r;
}

/* How many errors the codec reported, and the last one's text. */
int ut_vdec_errors(struct ut_vdec *d, char *buf, size_t len)
{
    if (len > 0) {
        size_t n = strnlen(d->log.last, sizeof d->log.last);
        n = n < len - 1 ? n : len - 1;
        memcpy(buf, d->log.last, n);
        buf[n] = '\0';
    }
    return d->log.errors;
}
