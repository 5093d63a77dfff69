/*
 * Minimal libjpeg driver for clip-preprocess, mirroring the settings of Pillow's JpegDecode.c:
 * default DCT method (ISLOW) and fancy upsampling, libjpeg's own guess of the file's colour space,
 * output colour space chosen from the number of components (L, RGB, CMYK). Fatal libjpeg errors are
 * caught here with setjmp/longjmp so that no non-local jump ever crosses into Rust.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeglib.h"
#include "jerror.h"

#define CLIP_JPEG_OK 0
#define CLIP_JPEG_ERROR 1
#define CLIP_JPEG_TRUNCATED 2

struct clip_jpeg {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    jmp_buf jump;
    /* set when libjpeg had to invent an EOI before all scanlines were read (Pillow: "image file is truncated") */
    int truncated;
    int reading;
    char message[JMSG_LENGTH_MAX];
};

static void clip_error_exit(j_common_ptr cinfo) {
    struct clip_jpeg *ctx = (struct clip_jpeg *)cinfo->client_data;
    (*cinfo->err->format_message)(cinfo, ctx->message);
    longjmp(ctx->jump, 1);
}

static void clip_emit_message(j_common_ptr cinfo, int level) {
    struct clip_jpeg *ctx = (struct clip_jpeg *)cinfo->client_data;
    if (level < 0) {
        /* Warnings do not stop Pillow either; only a premature end of data does. */
        if (cinfo->err->msg_code == JWRN_JPEG_EOF && ctx->reading) {
            ctx->truncated = 1;
        }
        cinfo->err->num_warnings++;
    }
}

static void clip_output_message(j_common_ptr cinfo) { (void)cinfo; }

static int clip_jpeg_init(struct clip_jpeg *ctx) {
    ctx->cinfo.err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = clip_error_exit;
    ctx->err.emit_message = clip_emit_message;
    ctx->err.output_message = clip_output_message;
    ctx->cinfo.client_data = ctx;
    if (setjmp(ctx->jump)) {
        return CLIP_JPEG_ERROR;
    }
    jpeg_create_decompress(&ctx->cinfo);
    return CLIP_JPEG_OK;
}

struct clip_jpeg *clip_jpeg_new(void) {
    struct clip_jpeg *ctx = (struct clip_jpeg *)calloc(1, sizeof(struct clip_jpeg));
    if (!ctx) {
        return NULL;
    }
    if (clip_jpeg_init(ctx) != CLIP_JPEG_OK) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

void clip_jpeg_free(struct clip_jpeg *ctx) {
    if (ctx) {
        jpeg_destroy_decompress(&ctx->cinfo);
        free(ctx);
    }
}

const char *clip_jpeg_message(const struct clip_jpeg *ctx) { return ctx->message; }

/* Reads the header: width, height and number of components of the frame. */
int clip_jpeg_read_header(
    struct clip_jpeg *ctx,
    const unsigned char *data,
    unsigned long len,
    unsigned int *width,
    unsigned int *height,
    int *components
) {
    if (setjmp(ctx->jump)) {
        return CLIP_JPEG_ERROR;
    }
    ctx->reading = 1;
    jpeg_mem_src(&ctx->cinfo, data, len);
    if (jpeg_read_header(&ctx->cinfo, TRUE) != JPEG_HEADER_OK) {
        strcpy(ctx->message, "no image in JPEG data");
        return CLIP_JPEG_ERROR;
    }
    if (ctx->truncated) {
        strcpy(ctx->message, "image file is truncated");
        return CLIP_JPEG_TRUNCATED;
    }
    *width = ctx->cinfo.image_width;
    *height = ctx->cinfo.image_height;
    *components = ctx->cinfo.num_components;
    return CLIP_JPEG_OK;
}

/* Decodes all scanlines into `out` (height rows of `stride` bytes, `components` bytes a pixel). */
int clip_jpeg_decode(struct clip_jpeg *ctx, unsigned char *out, size_t stride) {
    if (setjmp(ctx->jump)) {
        return CLIP_JPEG_ERROR;
    }
    switch (ctx->cinfo.num_components) {
        case 1:
            ctx->cinfo.out_color_space = JCS_GRAYSCALE;
            break;
        case 3:
            ctx->cinfo.out_color_space = JCS_RGB;
            break;
        case 4:
            ctx->cinfo.out_color_space = JCS_CMYK;
            break;
        default:
            strcpy(ctx->message, "unsupported number of components");
            return CLIP_JPEG_ERROR;
    }
    jpeg_start_decompress(&ctx->cinfo);
    if (ctx->cinfo.output_components != ctx->cinfo.num_components ||
        ctx->cinfo.output_width != ctx->cinfo.image_width ||
        ctx->cinfo.output_height != ctx->cinfo.image_height) {
        strcpy(ctx->message, "unexpected decoder output layout");
        return CLIP_JPEG_ERROR;
    }
    while (ctx->cinfo.output_scanline < ctx->cinfo.output_height) {
        JSAMPROW row = out + (size_t)ctx->cinfo.output_scanline * stride;
        if (jpeg_read_scanlines(&ctx->cinfo, &row, 1) != 1) {
            strcpy(ctx->message, "image file is truncated");
            return CLIP_JPEG_TRUNCATED;
        }
    }
    if (ctx->truncated) {
        strcpy(ctx->message, "image file is truncated");
        return CLIP_JPEG_TRUNCATED;
    }
    /* Like Pillow, a missing EOI after the last scanline is not an error. */
    ctx->reading = 0;
    jpeg_finish_decompress(&ctx->cinfo);
    return CLIP_JPEG_OK;
}
