"""The one vocabulary of port mistakes: every diagnosis a verdict names, by id, with what to change.

Both ways of finding a mistake name it from this registry: the stage signatures of a dump comparison
(`diagnose.py`) and the simulation of a port's output frames (`harness/ports/simulate.py`, where each
catalogued hypothesis is one concrete form of a mistake here: `mask_smaller_2` of `mask_rectangle_off`),
and the port judge's own findings (alignment, encoding, sound). So the same mistake has the same id in
every result, and PORTING.md's list of usual mistakes is this table.

    mistake("mask_rectangle_off").fix   # what the port should change, in its own terms
    diagnosis("ghost_audio", "frame.unet_audio", "the U-Net audio input is all zeros ...")
"""

from __future__ import annotations

from dataclasses import dataclass

from ...reference.stages import STAGE_NAMES
from .types import Diagnosis

VIDEO = "video"  # mistakes that show only in the written video, after the stage contract


@dataclass(frozen=True)
class Mistake:
    """A port mistake: its id, what the port does (title), what to change (fix), and the stage it first shows in
    (PORTING.md's *What to implement* step for that stage says how to do it right)."""

    id: str
    title: str
    fix: str
    stage: str

    @property
    def porting_section(self) -> str:
        """Where PORTING.md says how to do it right."""
        return f"What to implement: `{self.stage}`" if self.stage in STAGE_NAMES else "Proving it (the video)"


MISTAKES: tuple[Mistake, ...] = (
    # audio front end
    Mistake("stft_no_center", "STFT without centring (center=False): 4 mel frames fewer, so fewer output frames",
            "centre the STFT: pad n_fft / 2 = 400 samples on each side (librosa center=True), T = 1 + S // 200 mel frames", "audio.mel"),
    Mistake("stft_other_pad_mode", "STFT centre padding by reflection (older librosa) instead of zeros",
            "pad the signal with zeros for the centred STFT (librosa >= 0.10 pad_mode='constant')", "audio.mel"),
    Mistake("symmetric_window", "symmetric Hann window instead of the periodic one librosa uses",
            "use the periodic Hann window of 800 samples (scipy get_window('hann', 800, fftbins=True); window.npy)", "audio.mel"),
    Mistake("no_preemphasis", "pre-emphasis skipped", "apply y(n) = x(n) - 0.97 x(n-1) to the PCM before the STFT", "audio.mel"),
    Mistake("power_spectrum", "power spectrum (the magnitude squared) instead of the magnitude before the mel filterbank",
            "multiply the mel filterbank with the STFT's magnitude abs(X), not its square", "audio.mel"),
    Mistake("htk_mel", "HTK mel scale instead of librosa's Slaney scale",
            "use librosa's Slaney mel scale and norm, 80 bands 55..7600 Hz (mel_filterbank.npy)", "audio.mel"),
    Mistake("no_ref_level", "the -20 dB reference level not subtracted", "subtract 20 after 20 * log10(max(1e-5, mel))", "audio.mel"),
    Mistake("mel_range_0_4", "mel normalized to [0, 4] instead of the symmetric [-4, 4]",
            "normalize with clip(8 * (S + 100) / 100 - 4, -4, 4)", "audio.mel"),
    Mistake("audio_dropped", "feature rows dropped: the features not padded, or windows cut at the start or end",
            "encode every window (the last ones clamped to end at T), then repeat the first and the last feature row once: "
            "N windows make N + 2 rows, one per output frame", "audio.features"),
    # U-Net audio input
    Mistake("ghost_audio", "U-Net audio input silent, or the same for every frame",
            "feed frame i rows i-8 .. i+7 of the padded features (zeros only outside them); the mouth follows the speech", "frame.unet_audio"),
    Mistake("audio_tiled", "one feature row tiled over the 16-row audio window",
            "feed frame i the 16 consecutive rows i-8 .. i+7 of the padded features, not row i repeated", "frame.unet_audio"),
    Mistake("audio_shifted", "the audio window shifted by whole feature rows",
            "frame i reads rows i-8 .. i+7 of the padded features; window k starts at mel frame int(80 * k / 25)", "frame.unet_audio"),
    Mistake("audio_rows_repeated", "feature rows repeated: features made at a lower rate and held for several frames",
            "encode one window per output frame (window k starts at mel frame int(80 * k / 25)) and give frame i its own rows "
            "i-8 .. i+7, not a held copy", "frame.unet_audio"),
    Mistake("audio_smoothed", "the feature sequence filtered across windows (a moving average over neighbouring rows)",
            "feed the encoder's feature rows as they are: no smoothing or filtering across windows", "frame.unet_audio"),
    Mistake("audio_edge_repeated", "rows before the first feature row and after the last padded by repeating the end rows",
            "rows outside the padded features are zeros in frame i's window (the first and last rows are repeated once, "
            "by the padding, and no more)", "frame.unet_audio"),
    # frame geometry
    Mistake("template_off_by_one", "template schedule off by one",
            "follow the ping-pong schedule: the first output frame uses template 1, then 2, ..., the last, back down to 0",
            "frame.template_index"),
    Mistake("template_sequence", "output frames built on templates in another order than the ping-pong schedule",
            "walk the templates 1, 2, ..., L, L-1, ..., 0, 1, ... (idx starts at 0, steps before use; the first frame uses template 1), "
            "one step per output frame", "frame.template_index"),
    Mistake("landmark_off_by_one", "crop box from the landmarks of the neighbouring template",
            "take the crop box from the landmarks of the template the frame uses (N.jpg pairs with N.lms; check 0/1-based "
            "numbering and start_frame)", "frame.crop_box"),
    Mistake("crop_box_sequence", "mouths pasted into the crop boxes of other templates' landmarks than the ones the frames are built on",
            "crop and paste each frame in the box of the landmarks of the template it is built on: read N.jpg and N.lms by the same "
            "index, in the same order (sort both numerically; check 0/1-based numbering and start_frame)", "frame.crop_box"),
    Mistake("crop_box_wrong_frame", "crop box of another frame, or one box for every frame",
            "compute each frame's crop box from its own template's landmarks", "frame.crop_box"),
    Mistake("channels_swapped", "RGB instead of BGR before the network (the crop or the U-Net input)",
            "keep OpenCV's BGR order from the decoded template to both halves of the U-Net input", "frame.unet_input"),
    Mistake("resize_not_bicubic", "crop or pasted region resized with another kernel than OpenCV's bicubic",
            "resize to 328 x 328 and back to the box with OpenCV's bicubic (cv2.INTER_CUBIC, a = -0.75); other bicubics "
            "use a = -0.5 or other pixel-centre conventions", "frame.crop_328"),
    Mistake("resize_mapping", "crop or pasted region resized with pixels mapped corner to corner (align_corners) or by scaled indices, "
            "not on OpenCV's half-pixel centres",
            "resize as cv2.resize does: output pixel x samples the source at (x + 0.5) * n_in / n_out - 0.5 (half-pixel centres), with "
            "OpenCV's bicubic (a = -0.75, edges replicated); not at x * (n_in - 1) / (n_out - 1) (align_corners=True) or x * n_in / n_out",
            "frame.crop_328"),
    Mistake("jpeg_template", "template frames re-encoded as JPEG before use",
            "use the template files as decoded, without re-encoding them (the crop and the paste both read them)", "frame.crop_328"),
    Mistake("jpeg_crop", "the 328 x 328 crop JPEG-compressed", "keep the crop as uint8 in memory, without a lossy round trip",
            "frame.crop_328"),
    # U-Net image input
    Mistake("input_halves_swapped", "U-Net image input halves swapped: masked half first",
            "put the real half first (channels 0-2) and the masked half second (channels 3-5)", "frame.unet_input"),
    Mistake("wrong_input_scaling", "U-Net image input not scaled to 0..1 by / 255",
            "divide the uint8 crop by 255 (float32): 0..1, no mean or std, not [-1, 1]", "frame.unet_input"),
    Mistake("mask_rectangle_off", "mask rectangle in the wrong place or of the wrong size",
            "black out rows 5..309 and columns 5..314 of the 320 x 320 inner crop: cv2.rectangle(img, (x=5, y=5, w=310, h=305), "
            "(0, 0, 0), -1)", "frame.unet_input"),
    # the networks
    Mistake("random_weights", "network weights not loaded, random, or from another checkpoint",
            "load the checkpoint with every key matched (audio_visual_encoder.pth keys carry no 'audio_encoder.' prefix)",
            "frame.unet_output"),
    Mistake("unet_fp16", "U-Net run in fp16 (half precision: weights and activations stored with an 11-bit mantissa)",
            "run the U-Net in fp32 for exact parity; or, if an fp16 network is meant, judge it with the fp16 gate (--precision fp16)",
            "frame.unet_output"),
    Mistake("unet_bf16", "U-Net run in bf16 (bfloat16: weights and activations stored with an 8-bit mantissa)",
            "run the U-Net in fp32 (bf16 moves the mouth by several pixel levels; fp16 with fp32 accumulation, if reduced precision is "
            "needed, is 8 times finer), e.g. model.float() / no autocast, or an fp32 or fp16 export", "frame.unet_output"),
    Mistake("fp16_overflow", "an fp16 activation overflowed (NaN, Inf, or values pinned at the limits)",
            "run the overflowing layers in fp32 (keep_io_types, mixed precision)", "frame.unet_output"),
    # after the network
    Mistake("rounding_not_truncation", "U-Net output rounded instead of truncated",
            "convert with (x * 255).astype(uint8): truncate, do not round", "frame.mouth"),
    Mistake("channels_swapped_at_paste", "colour channels reversed after the network (the mouth, the pasted region or the frame)",
            "keep BGR from the U-Net output to the written frame", "frame.mouth"),
    Mistake("jpeg_mouth", "the 320 x 320 mouth JPEG-compressed", "keep the mouth as uint8 in memory, without a lossy round trip",
            "frame.mouth"),
    Mistake("no_canvas", "mouth resized straight onto the crop box without the 328 canvas",
            "write the mouth into crop_328[4:324, 4:324], then resize the whole 328 x 328 crop back to the box", "frame.pasted_region"),
    Mistake("blended_paste", "the pasted region blended into the frame (feathered, or seamless-cloned) instead of written over it",
            "write the resized region straight into the frame at rows ymin:ymax, columns xmin:xmax: no alpha ramp at its edge, no cv2.seamlessClone",
            "frame.output"),
    Mistake("geometry", "the pasted crop box scaled or shifted: a geometric mistake no catalogued one explains",
            "check the crop box, the 328 resize and where the region is pasted", "frame.pasted_region"),
    Mistake("lossy_output", "output frames written lossy (JPEG, or a lossy video codec)",
            "write the frames losslessly (PNG, or dump the stages) to be compared; or judge them with a gate that allows it "
            "(lossy_ok = true and region PSNR thresholds)", "frame.output"),
    Mistake("frame_offset", "output frames shifted against the reference",
            "number the output frames from the first audio window, each made from the schedule's template", "frame.output"),
    Mistake("frames_missing", "output frames missing or extra", "write every output frame: N + 2 for N encoder windows",
            "frame.output"),
    # the video
    Mistake("wrong_frame_count", "another number of output frames than the reference's",
            "make one output frame per padded feature row: N + 2 for N encoder windows", VIDEO),
    Mistake("wrong_frame_rate", "video frame rate other than 25 fps", "write the video at 25 frames a second", VIDEO),
    Mistake("colour_conversion", "video frames converted to YUV with another matrix or range than the stream declares: colours shifted "
            "everywhere once decoded",
            "let FFmpeg convert (pipe bgr24 frames, -pix_fmt yuv420p: BT.601 limited range, as the reference pipeline writes), or convert "
            "with the range and matrix you tag: limited range is Y = 16 + 219 * luma, full range needs -color_range pc; BT.709 needs "
            "-colorspace bt709", VIDEO),
    Mistake("av_offset", "the sound track out of sync with the frames", "mux the input audio from its first sample with the first frame",
            VIDEO),
    Mistake("wrong_sound_track", "the video's sound is not the input audio", "mux the input audio file as the sound track", VIDEO),
)
MISTAKES_BY_ID: dict[str, Mistake] = {m.id: m for m in MISTAKES}


def mistake(mistake_id: str) -> Mistake:
    """The registered mistake `mistake_id` (a KeyError names an id missing from the registry: a bug)."""
    try:
        return MISTAKES_BY_ID[mistake_id]
    except KeyError:
        raise KeyError(f"{mistake_id!r} is not a registered mistake (harness/verdict/mistakes.py)") from None


def diagnosis(mistake_id: str, stage: str, message: str) -> Diagnosis:
    """A diagnosis of the registered mistake `mistake_id`, seen in `stage`; `message` gives the evidence and the fix."""
    return Diagnosis(mistake(mistake_id).id, stage, message)
