"""The avatar builder: from a talking-head video to a training dataset."""
