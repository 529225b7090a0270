"""Building blocks of the frame path: reading images and frames, finding faces, the crop geometry,
tracking and drawing. They import no application module (predict, camera, serve, bench, explain), so
the Recognizer, the trainer's detector crops and every command share one implementation."""
