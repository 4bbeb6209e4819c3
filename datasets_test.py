"""Tests for datasets.py: each split reader on small fixture files.

The fixtures are written by the tests; the "videos" are empty files, since
the readers only list them.
"""

import os

from absl.testing import parameterized
import tensorflow as tf

import datasets
import testing


def _write(path: str, text: str = '') -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return path


class _Fixture(testing.TempDirMixin, tf.test.TestCase, parameterized.TestCase):

  def folder(self, name: str) -> str:
    path = os.path.join(self.tmp, self.id().rsplit('.', 1)[-1], name)
    os.makedirs(path, exist_ok=True)
    return path


class Ucf101Test(_Fixture):

  def make(self, trainlist=None, testlist=None):
    root = self.folder('UCF-101')
    lists = os.path.join(root, 'ucfTrainTestlist')
    _write(
        os.path.join(lists, 'classInd.txt'),
        '1 ApplyEyeMakeup\n2 Archery\n3 Basketball\n',
    )
    _write(
        os.path.join(lists, 'trainlist01.txt'),
        trainlist
        or (
            'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n'
            'Basketball/v_Basketball_g08_c02.avi 3\n'
        ),
    )
    _write(
        os.path.join(lists, 'testlist01.txt'),
        testlist
        or (
            'Archery/v_Archery_g01_c01.avi\n\n'
            'Basketball/v_Basketball_g01_c03.avi\n'
        ),
    )
    for video in (
        'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi',
        'Basketball/v_Basketball_g08_c02.avi',
        'Archery/v_Archery_g01_c01.avi',
        'Basketball/v_Basketball_g01_c03.avi',
    ):
      _write(os.path.join(root, video))
    return root

  def test_train_and_test_lists(self):
    root = self.make()
    train = datasets.load('ucf101', root, 'train', fold=1)
    self.assertEqual(
        train.class_names, ['ApplyEyeMakeup', 'Archery', 'Basketball']
    )
    self.assertEqual([e.label for e in train.examples], [0, 2])
    self.assertEqual(
        train.examples[1].path,
        os.path.join(root, 'Basketball/v_Basketball_g08_c02.avi'),
    )
    self.assertEndsWith(train.examples[1].source, 'trainlist01.txt:2')
    test = datasets.load('ucf101', root, 'test')
    self.assertEqual([e.label for e in test.examples], [1, 2])
    self.assertEndsWith(test.examples[1].source, 'testlist01.txt:3')

  def test_label_disagrees_with_folder(self):
    root = self.make(trainlist='Archery/v_Archery_g01_c01.avi 3\n')
    with self.assertRaisesRegex(
        datasets.DatasetError,
        r"trainlist01\.txt:1: label 3 is 'Basketball' but the video is in "
        r"folder 'Archery'",
    ):
      datasets.load('ucf101', root, 'train')

  def test_unknown_class(self):
    root = self.make(testlist='Archery/a.avi\nJuggling/v_J_g01_c01.avi\n')
    with self.assertRaisesRegex(
        datasets.DatasetError, r"testlist01\.txt:2: unknown class 'Juggling'"
    ):
      datasets.load('ucf101', root, 'test')

  def test_test_line_with_a_label_is_malformed(self):
    root = self.make(testlist='Archery/v_Archery_g01_c01.avi 2\n')
    with self.assertRaisesRegex(
        datasets.DatasetError, r'testlist01\.txt:1: expected'
    ):
      datasets.load('ucf101', root, 'test')

  def test_missing_video(self):
    root = self.make(trainlist='Archery/v_Archery_g09_c09.avi 2\n')
    with self.assertRaisesRegex(
        datasets.DatasetError,
        r'trainlist01\.txt:1: video .*v_Archery_g09_c09'
        r"\.avi' does not exist",
    ):
      datasets.load('ucf101', root, 'train')

  def test_skipping_every_missing_video_leaves_an_empty_split(self):
    root = self.make(trainlist='Archery/v_Archery_g09_c09.avi 2\n')
    with self.assertRaisesRegex(datasets.DatasetError, r'the split is empty'):
      datasets.load('ucf101', root, 'train', missing='skip')

  def test_skip_missing_keeps_the_rest(self):
    root = self.make(
        trainlist='Archery/v_Archery_g09_c09.avi 2\n'
        'Archery/v_Archery_g01_c01.avi 2\n'
    )
    got = datasets.load('ucf101', root, 'train', missing='skip')
    self.assertLen(got, 1)

  def test_missing_split_file(self):
    root = self.make()
    with self.assertRaisesRegex(
        datasets.DatasetError, r'trainlist02\.txt.* does not exist'
    ):
      datasets.load('ucf101', root, 'train', fold=2)


class Hmdb51Test(_Fixture):

  def make(self, extra: str = ''):
    root = self.folder('hmdb51')
    splits = os.path.join(root, 'testTrainMulti_7030_splits')
    _write(
        os.path.join(splits, 'wave_test_split1.txt'),
        'wave_a.avi 1 \nwave_b.avi 2 \nwave_c.avi 0 \n' + extra,
    )
    _write(
        os.path.join(splits, 'brush_hair_test_split1.txt'),
        'brush_a.avi 2 \nbrush_b.avi 1 \n',
    )
    for name in (
        'wave/wave_a.avi',
        'wave/wave_b.avi',
        'wave/wave_c.avi',
        'brush_hair/brush_a.avi',
        'brush_hair/brush_b.avi',
    ):
      _write(os.path.join(root, name))
    return root

  @parameterized.parameters(
      ('train', ['brush_b.avi', 'wave_a.avi'], [0, 1]),
      ('test', ['brush_a.avi', 'wave_b.avi'], [0, 1]),
  )
  def test_split_codes(self, split, names, labels):
    got = datasets.load('hmdb51', self.make(), split, fold=1)
    self.assertEqual(got.class_names, ['brush_hair', 'wave'])
    self.assertEqual([os.path.basename(e.path) for e in got.examples], names)
    self.assertEqual([e.label for e in got.examples], labels)

  def test_bad_code(self):
    with self.assertRaisesRegex(
        datasets.DatasetError,
        r'wave_test_split1\.txt:4: expected ' r'"<video>\.avi <0\|1\|2>"',
    ):
      datasets.load('hmdb51', self.make('wave_d.avi 7\n'), 'train')

  def test_no_split_files(self):
    with self.assertRaisesRegex(
        datasets.DatasetError, r'No HMDB-51 split files \*_test_split3'
    ):
      datasets.load('hmdb51', self.make(), 'train', fold=3)


class CsvTest(_Fixture):

  def make(self, text: str):
    root = self.folder('csv')
    for name in ('a.mp4', 'sub/b.mp4', 'c.mp4'):
      _write(os.path.join(root, name))
    _write(os.path.join(root, 'train.csv'), text)
    return root

  def test_names_with_header_and_times(self):
    root = self.make(
        'path,label,start,end\na.mp4,run,,\nsub/b.mp4,jump,1.5,'
        '3\nc.mp4,run,,\n'
    )
    got = datasets.load('csv', root, 'train')
    self.assertEqual(got.class_names, ['jump', 'run'])
    self.assertEqual([e.label for e in got.examples], [1, 0, 1])
    self.assertEqual((got.examples[1].start, got.examples[1].end), (1.5, 3.0))
    self.assertIsNone(got.examples[0].start)

  def test_indices_without_header(self):
    root = self.make('a.mp4,2\nsub/b.mp4,0\n')
    got = datasets.load(
        'csv',
        root,
        'train.csv',
        label_type='index',
        class_names=['x', 'y', 'z'],
    )
    self.assertEqual([e.label for e in got.examples], [2, 0])

  def test_unknown_class_name(self):
    root = self.make('a.mp4,run\nc.mp4,swim\n')
    with self.assertRaisesRegex(
        datasets.DatasetError, r"train\.csv:2: unknown class 'swim'"
    ):
      datasets.load('csv', root, 'train', class_names=['run', 'jump'])

  def test_index_out_of_range(self):
    root = self.make('a.mp4,0\nc.mp4,3\n')
    with self.assertRaisesRegex(
        datasets.DatasetError,
        r"train\.csv:2: label '3' is not a class index " r'0\.\.2',
    ):
      datasets.load(
          'csv', root, 'train', label_type='index', class_names=['x', 'y', 'z']
      )

  def test_bad_time(self):
    root = self.make('path,label,start\na.mp4,run,soon\n')
    with self.assertRaisesRegex(
        datasets.DatasetError, r"train\.csv:2: start 'soon' is not a number"
    ):
      datasets.load('csv', root, 'train')

  def test_empty_file(self):
    root = self.make('\n')
    with self.assertRaisesRegex(datasets.DatasetError, r'the split is empty'):
      datasets.load('csv', root, 'train')

  def test_label_map_file_gives_the_classes(self):
    root = self.make('a.mp4,jump\n')
    label_map = _write(os.path.join(root, 'labels.txt'), 'run\njump\nswim\n')
    got = datasets.load('csv', root, 'train', class_names=label_map)
    self.assertEqual(got.class_names, ['run', 'jump', 'swim'])
    self.assertEqual(got.examples[0].label, 1)


class FolderTest(_Fixture):

  def test_class_subfolders(self):
    root = self.folder('videos')
    for name in (
        'train/b/1.mp4',
        'train/a/2.avi',
        'train/a/deep/3.mkv',
        'train/a/notes.txt',
    ):
      _write(os.path.join(root, name))
    got = datasets.load('folder', root, 'train')
    self.assertEqual(got.class_names, ['a', 'b'])
    self.assertEqual(
        [(os.path.basename(e.path), e.label) for e in got.examples],
        [('2.avi', 0), ('3.mkv', 0), ('1.mp4', 1)],
    )

  def test_unknown_subfolder(self):
    root = self.folder('videos')
    _write(os.path.join(root, 'c', '1.mp4'))
    with self.assertRaisesRegex(datasets.DatasetError, r"unknown class 'c'"):
      datasets.load('folder', root, class_names=['a', 'b'])

  def test_no_videos(self):
    root = self.folder('videos')
    _write(os.path.join(root, 'a', 'readme.txt'))
    with self.assertRaisesRegex(datasets.DatasetError, r'the split is empty'):
      datasets.load('folder', root)


class KineticsTest(_Fixture):

  def make(self, rows: str):
    root = self.folder('kinetics')
    _write(
        os.path.join(root, 'validate.csv'),
        'label,youtube_id,time_start,time_end,split\n' + rows,
    )
    return root

  def test_clipped_files_in_label_folders(self):
    root = self.make(
        'abseiling,--07WQ2iBlw,1,11,val\n' 'air drumming,-0aT8xXKbhM,5,15,val\n'
    )
    _write(
        os.path.join(
            root, 'validate', 'abseiling', '--07WQ2iBlw_000001_000011.mp4'
        )
    )
    _write(os.path.join(root, 'validate', '-0aT8xXKbhM_000005_000015.mp4'))
    got = datasets.load(
        'kinetics',
        root,
        'validate',
        class_names=['abseiling', 'air drumming', 'archery'],
    )
    self.assertEqual([e.label for e in got.examples], [0, 1])
    self.assertTrue(
        all(e.start is None and e.end is None for e in got.examples)
    )
    self.assertEqual(
        os.path.basename(got.examples[1].path), '-0aT8xXKbhM_000005_000015.mp4'
    )

  def test_full_videos_are_clipped_when_read(self):
    root = self.make('abseiling,--07WQ2iBlw,1.5,11.5,val\n')
    _write(os.path.join(root, '--07WQ2iBlw.mp4'))
    got = datasets.load('kinetics', root, 'validate.csv', clipped=False)
    self.assertEqual((got.examples[0].start, got.examples[0].end), (1.5, 11.5))

  def test_row_without_label(self):
    root = self.make(',--07WQ2iBlw,1,11,test\n')
    with self.assertRaisesRegex(
        datasets.DatasetError, r'validate\.csv:2: the row has no label'
    ):
      datasets.load('kinetics', root, 'validate')

  def test_unknown_class(self):
    root = self.make('yodelling,--07WQ2iBlw,1,11,val\n')
    with self.assertRaisesRegex(
        datasets.DatasetError, r"validate\.csv:2: unknown class 'yodelling'"
    ):
      datasets.load('kinetics', root, 'validate', class_names=['abseiling'])

  def test_missing_videos_skipped(self):
    root = self.make(
        'abseiling,aaaaaaaaaaa,1,11,val\n' 'abseiling,bbbbbbbbbbb,1,11,val\n'
    )
    _write(os.path.join(root, 'abseiling', 'bbbbbbbbbbb_000001_000011.mp4'))
    got = datasets.load('kinetics', root, 'validate', missing='skip')
    self.assertLen(got, 1)
    self.assertEndsWith(got.examples[0].source, 'validate.csv:3')


class LoadTest(parameterized.TestCase):

  def test_unknown_kind_lists_the_kinds(self):
    with self.assertRaisesRegex(
        ValueError,
        r"`kind` must be one of \('ucf101', 'hmdb51', 'csv', "
        r"'folder', 'kinetics'\); got 'ucf",
    ):
      datasets.load('ucf', '/nowhere', 'train')

  def test_unknown_option(self):
    with self.assertRaisesRegex(
        ValueError, r'Unknown option for kind ' r"'folder'.*'fold'"
    ):
      datasets.load('folder', '/nowhere', fold=1)

  def test_bad_split(self):
    with self.assertRaisesRegex(
        ValueError, r"`split` must be one of \('train', 'test'\); got 'val'"
    ):
      datasets.load('ucf101', '/nowhere', 'val')


if __name__ == '__main__':
  tf.test.main()
